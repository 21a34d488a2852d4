"""WSGAN runs: ``tfface train recipes/wsgan_features.yaml``.

:func:`run_recipe` runs a :class:`tfface.methods.wsgan.WSGANRecipe`:

1. the data: the spec's feature-level world (``data.world``: condition, lost coordinates, sizes);
2. M0 pretraining (F and W_C by softmax on the strong modality), then the WSGAN variant from it with
   ``model.fit`` over the alternating pipeline; TensorBoard scalars (every loss, the critic's estimate of
   the Wasserstein distance) and, at the end, histograms of the generated features' intra- and
   inter-identity cosine similarity under ``<out>/tensorboard``;
3. the evaluation: sigma chosen on the validation identities, Recall@1/5/50 and TPR@FPR on the test
   identities with distractors, averaged over ``eval.draws`` z draws, next to the sigma -> inf limit;
4. with ``export``, the generator as a TF Serving SavedModel (``weak_features``, ``z`` ->
   ``strong_features``) under ``<out>/export/generator/1``, checked in a fresh process;
5. ``<out>/report.json``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from tfface.methods.wsgan.config import WSGANRecipe

__all__ = ["export_generator", "run_recipe"]


def export_generator(model, export_dir: str | os.PathLike, sample_weak: np.ndarray) -> dict:
    from tfface.export import check_saved_model, export_saved_model_inputs
    from tfface.signatures import NOISE, STRONG_FEATURES, WEAK_FEATURES

    cfg = model.config
    gen = model.generator_model()
    z = np.random.default_rng(0).normal(size=(len(sample_weak), cfg.z_dim)).astype(np.float32)
    version_dir = export_saved_model_inputs(gen, export_dir, "generator",
                                            {WEAK_FEATURES: (cfg.weak_dim,), NOISE: (cfg.z_dim,)}, STRONG_FEATURES,
                                            {WEAK_FEATURES: sample_weak, NOISE: z}, overwrite=True)
    check = check_saved_model(version_dir, expected_inputs={WEAK_FEATURES: [None, cfg.weak_dim], NOISE: [None, cfg.z_dim]},
                              expected_outputs={STRONG_FEATURES: [None, cfg.feature_dim]})
    return {"saved_model": str(version_dir), "check_ok": bool(check["ok"]), "problems": check["problems"]}


def _similarity_histograms(model, weak, log_dir: Path, step: int) -> None:
    import tensorflow as tf

    samples = model.generate(weak[:200], m=10)
    s = samples / np.maximum(np.linalg.norm(samples, axis=-1, keepdims=True), 1e-12)
    gram = np.einsum("qmd,qnd->qmn", s, s)
    m = s.shape[1]
    intra = gram[:, ~np.eye(m, dtype=bool)].reshape(-1)
    mean = s.mean(axis=1)
    inter = (mean @ mean.T)[~np.eye(len(mean), dtype=bool)]
    with tf.summary.create_file_writer(str(log_dir / "similarity")).as_default():
        tf.summary.histogram("generated_intra_identity_cosine", intra, step=step)
        tf.summary.histogram("generated_inter_identity_cosine", inter, step=step)


def run_recipe(recipe: WSGANRecipe, out_dir: str | os.PathLike | None = None, verbose: int | str = "auto") -> dict:
    """Run a WSGAN recipe (see the module docstring); returns the summary written to ``report.json``."""
    import keras

    from tfface.data.weak_strong import make_world
    from tfface.eval.report import write_json
    from tfface.experiments.wsgan import WSGANBenchConfig, sampler_metrics
    from tfface.methods.wsgan.data import check_labels
    from tfface.methods.wsgan.evaluation import matching_metrics
    from tfface.methods.wsgan.scoring import parzen_scores
    from tfface.training.wsgan import pretrain, train_wsgan

    out = Path(out_dir or recipe.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wc = recipe.world_config()
    world = make_world(wc)
    classes = check_labels(world["train_strong_labels"], world["train_weak_labels"])
    cfg = recipe.model_config(wc.weak_dim, wc.strong_dim)
    t = recipe.train
    quiet = 0 if verbose == 0 else 2
    pre_f, pre_c, pre_hist = pretrain(cfg, world["train_strong"], world["train_strong_labels"], classes,
                                      t.pretrain_epochs, t.strong_batch_size, seed=cfg.seed, verbose=quiet)
    tb = keras.callbacks.TensorBoard(str(out / "tensorboard"))
    epochs = max(1, min(10, t.iterations // 100))
    res = train_wsgan(cfg, world, classes, t.iterations, t.strong_batch_size, t.weak_batch_size,
                      pretrained=(pre_f, pre_c), callbacks=[tb], verbose=quiet,
                      steps_per_epoch=max(1, t.iterations // epochs))
    model = res.model
    _similarity_histograms(model, world["test_weak"], out / "tensorboard", t.iterations)
    ev = recipe.eval
    bench = WSGANBenchConfig(m_values=tuple(sorted({1, ev.m})), draws=ev.draws, sigmas=tuple(ev.sigmas))
    fval = (model.strong_features(world["val_gallery"]), world["val_gallery_labels"], world["val_labels"])
    ftest = (model.strong_features(world["gallery"]), world["gallery_labels"], world["test_labels"])
    if model.use_z:
        metrics = sampler_metrics(lambda split, m, s: model.generate(world[f"{split}_weak"], m=m, seed=s),
                                   fval, ftest, bench)
    else:
        mapped = model.generate(world["test_weak"], m=1)
        metrics = matching_metrics(parzen_scores(mapped, ftest[0], math.inf), world["test_labels"], ftest[1])
    report = {"name": recipe.name, "variant": cfg.variant, "world": {"condition": wc.condition, "lost": wc.lost},
              "pretrain_final_accuracy": pre_hist.get("accuracy", [None])[-1],
              "final_losses": {k: v[-1] for k, v in res.history.items()}, "train_seconds": round(res.seconds, 1),
              "metrics": metrics}
    from tfface.atomic import atomic_path

    with atomic_path(out / "wsgan.weights.h5", suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    if recipe.export:
        report["export"] = export_generator(model, out / "export", world["test_weak"][:8])
    write_json(report, out / "report.json")
    return report
