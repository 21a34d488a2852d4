"""DDL runs: ``tfface train recipes/ddl_resolution.yaml`` (or ``ddl_pose.yaml``).

:func:`run_recipe` runs a :class:`tfface.methods.ddl.config.DDLRecipe` in the order of the paper's
experiments:

1. the pretrained embedder (:func:`tfface.experiments.train_recognizer.embedder_for`):
   ``pretrained.embedder`` (a saved ``.keras``) when given, else ``pretrained.recipe`` (a recognizer
   recipe), reused from its own output folder when that run recorded the same recipe and trained
   into ``<out>/pretrained`` otherwise;
2. the fine-tuning data, split into easy and hard subsets (:func:`tfface.methods.ddl.data.make_split`)
   and, with ``eval.enabled``, the held-out test sets (:mod:`tfface.methods.ddl.protocol`);
3. fine-tuning (:func:`tfface.training.ddl.finetune_ddl`), TensorBoard logs under ``<out>/tensorboard``;
4. ``<out>/embedder.keras``, ``<out>/history.json`` (the recipe as trained and every epoch) and the
   per-subset evaluation before and after fine-tuning (``<out>/report.json``, ``<out>/histograms.png``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfface.atomic import atomic_path
from tfface.config import to_dict
from tfface.errors import DataError
from tfface.methods.ddl.config import DDLRecipe
from tfface.methods.ddl.data import make_split
from tfface.methods.ddl.protocol import builtin_test_sets, real_test_sets

__all__ = ["finetune_data", "run_recipe"]


def finetune_data(recipe: DDLRecipe):
    """``(images, labels, yaw or None, paths or None)`` of the recipe's fine-tuning data."""
    d = recipe.data
    if d.source == "builtin":
        from tfface.data.builtin import render_dataset

        data = render_dataset(d.builtin)
        return data.images, data.labels, data.nuisance.get("yaw"), None
    from tfface.data.sources import load_images

    images, labels, paths = load_images(d.path, size=d.image_size)
    yaw = None
    if d.split.attributes:
        from tfface.methods.ddl.data import load_attribute_file

        if paths is None:
            raise DataError("data.split.attributes: per-image attributes need an image folder (paths) as data.path")
        yaw = load_attribute_file(d.split.attributes, paths, root=d.path).get("yaw")
    return images, labels, yaw, paths


def run_recipe(recipe: DDLRecipe, out_dir: str | os.PathLike | None = None, verbose: int | str = "auto") -> dict:
    """Run a DDL recipe (see the module docstring); returns the summary written to ``report.json``."""
    from tfface.eval.report import write_json
    from tfface.experiments.train_recognizer import embedder_for
    from tfface.methods.ddl.evaluation import evaluate_embedder, plot_easy_hard_histograms
    from tfface.training.ddl import finetune_ddl
    from tfface.training.driver import write_record

    out = Path(out_dir or recipe.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = recipe.pretrained
    ref = p.embedder if p.embedder and (Path(p.embedder).is_file() or not p.recipe) else p.recipe
    embedder, _, source = embedder_for(ref, fallback_dir=out / "pretrained", epochs=p.epochs, verbose=verbose,
                                       where="pretrained")
    images, labels, yaw, _ = finetune_data(recipe)
    test = None
    if recipe.eval.enabled:
        if recipe.data.source == "builtin":
            test = builtin_test_sets(recipe.eval, recipe.data)
        else:  # hold out identities of the real data
            ids = np.unique(labels)
            rng = np.random.default_rng(recipe.eval.seed)
            held = rng.choice(ids, max(2, int(len(ids) * recipe.eval.real_test_fraction)), replace=False)
            m = np.isin(labels, held)
            test = real_test_sets(images[m], labels[m], recipe.data.split.factors)
            images, labels, yaw = images[~m], labels[~m], None if yaw is None else yaw[~m]
    easy, hard = make_split(images, labels, recipe.data.split, yaw)
    loss = None if recipe.train.baseline else recipe.loss
    model, history, seconds = finetune_ddl(
        embedder, easy, hard, recipe.model, loss, recipe.train, recipe.data.split.student_pairs,
        recipe.data.split.drop_unpaired, log_dir=str(out / "tensorboard"), verbose=verbose)
    with atomic_path(out / "embedder.keras", suffix=".keras") as tmp:
        model.embedder.save(tmp)
    write_record(out / "history.json", recipe, {"finetune": history}, seconds=seconds,
                 replicas=model.distribute_strategy.num_replicas_in_sync, seed=recipe.train.seed,
                 pretrained=source)
    report = {"recipe": to_dict(recipe), "pretrained": source, "history": history, "seconds": seconds,
              "subsets": {"easy": len(easy), **{h.name: len(h) for h in hard}}}
    if test is not None:
        before, s_before = evaluate_embedder(embedder, test, recipe.eval.far_targets)
        after, s_after = evaluate_embedder(model.embedder, test, recipe.eval.far_targets)
        report["eval"] = {"test_sets": test.summary(), "pretrained": before, "finetuned": after}
        hardest = [k for k in s_after if k != "easy"][0]
        plot_easy_hard_histograms({"pretrained": s_before, "fine-tuned" + (" (DDL)" if loss else ""): s_after},
                                  out / "histograms.png", subsets=["easy", hardest])
    write_json(report, out / "report.json")
    return report
