"""R3AN runs: ``tfface train recipes/r3an_builtin.yaml`` (and the baselines ``r3an_fc.yaml``, ``r3an_linear.yaml``).

:func:`run_recipe` runs a :class:`tfface.methods.r3an.config.R3ANRecipe`:

1. the triplets (56x56 face, old feature, new feature): with ``data.source: builtin``, the old and
   the new model (:func:`tfface.experiments.train_recognizer.embedder_for`: a ``.keras`` file, or a
   recognizer recipe trained first when its model is missing) embed the training identities of the
   old recipe's built-in world (cached as ``<out>/pairs.npz``); with ``npz``, a paired-features file;
2. the translator (:func:`tfface.experiments.translators.train_and_evaluate`): R3AN, a Table-3
   variant, the FC baseline or the closed-form linear one, with TensorBoard logs, ``history.json``
   (the recipe as trained) and ``translator.keras`` under ``<out>``;
3. with ``eval.enabled`` (built-in only), the MegaFace per-pair top-1 on held-out identities with
   distractors, next to each model's own top-1;
4. with ``export``, a TF Serving SavedModel under ``<out>/export/translator/1`` (signature
   ``source_features -> target_features``), checked in a fresh process (:func:`export_translator`);
5. ``<out>/report.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfface.errors import ConfigError
from tfface.methods.r3an.config import R3ANRecipe

__all__ = ["export_translator", "run_recipe", "triplets"]


def export_translator(translator, export_dir: str | os.PathLike, sample: np.ndarray, onnx: bool = False) -> dict:
    """Export ``translator`` as a TF Serving SavedModel (``<export_dir>/translator/1``), check its
    signature in a fresh process and, with ``onnx``, write ``translator.onnx`` and its parity with
    onnxruntime on ``sample``. Returns the export section of a report."""
    from tfface.export import check_saved_model, export_saved_model
    from tfface.signatures import SOURCE_FEATURES, TARGET_FEATURES

    src, tgt = int(translator.input_shape[-1]), int(translator.output_shape[-1])
    export_dir = Path(export_dir)
    version_dir = export_saved_model(translator, export_dir, name="translator", version=1,
                                     input_name=SOURCE_FEATURES, output_name=TARGET_FEATURES,
                                     input_shape=(src,), warmup_inputs=sample[:8], overwrite=True)
    check = check_saved_model(version_dir, expected_inputs={SOURCE_FEATURES: [None, src]},
                              expected_outputs={TARGET_FEATURES: [None, tgt]})
    out = {"saved_model": str(version_dir), "check_ok": bool(check["ok"]), "problems": check["problems"]}
    if onnx:
        from tfface.export.onnx import export_onnx, onnx_parity

        onnx_path = export_onnx(translator, export_dir / "translator.onnx", (src,), input_name=SOURCE_FEATURES)
        out.update(onnx=str(onnx_path), onnx_max_abs_diff=float(onnx_parity(translator, onnx_path, sample[:64])))
    return out


def triplets(recipe: R3ANRecipe, out: Path, verbose: int | str = "auto"):
    """``(PairedFeatures, TranslationSets or None, info)`` for the recipe's data section."""
    from tfface.methods.r3an.data import build_pairs, load_pairs

    d = recipe.data
    if d.source == "npz":
        return load_pairs(d.path), None, {"pairs": d.path}
    from tfface.embed import Embedder
    from tfface.experiments.demo import render_demo_sets
    from tfface.experiments.train_recognizer import embedder_for
    from tfface.experiments.translators import embed_sets

    models, recipes, info = {}, {}, {}
    for role, ref in (("old", d.old), ("new", d.new)):
        models[role], recipes[role], info[role] = embedder_for(ref, verbose=verbose, where=f"data.{role}")
    world = recipes["old"] or recipes["new"]
    if world is None or world.data.source != "builtin":
        raise ConfigError("data.old, data.new: the built-in source needs a built-in recognizer recipe as old or "
                          "new (its data.builtin and eval sections define the faces)")
    train, test, distract = render_demo_sets(world)
    prep = f"tfface{world.data.builtin.image_size}"
    old, new = (Embedder.from_keras(models[r], prep) for r in ("old", "new"))
    pairs = build_pairs(train.images, train.labels, old, new, cache=out / "pairs.npz")
    sets = embed_sets(test, distract, old, new) if recipe.eval.enabled else None
    info.update(world=world.name, distractors=int(len(distract)))
    return pairs, sets, info


def run_recipe(recipe: R3ANRecipe, out_dir: str | os.PathLike | None = None, verbose: int | str = "auto") -> dict:
    """Run an R3AN recipe (see the module docstring); returns the summary written to ``report.json``."""
    from tfface.eval.report import write_json
    from tfface.experiments.translators import own_top1, train_and_evaluate

    out = Path(out_dir or recipe.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs, sets, info = triplets(recipe, out, verbose)
    config = "linear" if recipe.variant == "linear" else recipe.translator_config(pairs.source_dim, pairs.target_dim)
    t = recipe.train
    res, metrics, _ = train_and_evaluate(config, pairs, sets, t.epochs, t.batch_size, out_dir=out, ridge=t.ridge,
                                         bn_recalibration=t.bn_recalibration, record=recipe,
                                         verbose=verbose)
    report = {"name": recipe.name, "variant": recipe.variant, "triplets": len(pairs), "data": info,
              "metrics": metrics, "translator": str(out / "translator.keras")}
    if sets is not None:
        report["own_top1"] = own_top1(sets)
    if recipe.export:
        report["export"] = export_translator(res.translator, out / "export", pairs.source[:64])
    write_json(report, out / "report.json")
    return report
