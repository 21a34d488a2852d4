"""GANFaces runs: ``tfface train ganfaces_builtin``.

:func:`run_recipe` runs a :class:`tfface.methods.ganfaces.GANFacesRecipe`:

1. the data: the toy world's synthetic (``plain`` 3DMM renders of new identities), unpaired real, paired
   and R_C sets from the built-in renderer (:func:`tfface.methods.ganfaces.data.render_domains`);
2. the frozen identity embedder C: ``embedder.path`` (a ``.keras`` file) or the small CNN pretrained by
   softmax on R_C (:func:`tfface.training.ganfaces.pretrain_embedder`);
3. GANFaces (the recipe's variant) with ``model.fit``; TensorBoard under ``<out>/tensorboard``: every loss,
   the three k's and BEGAN's convergence measures each epoch, and every ``train.image_every`` steps an
   image grid ``render | refined (EMA, dropout off) | paired real`` of fixed pairs (``images/pairs``);
4. the generated set: ``generate.identities`` x ``generate.images_per_identity`` refined renders (EMA
   weights, dropout on) in ``<out>/ganfaces_generated.npz`` (the :func:`tfface.data.builtin.save_dataset`
   format, loadable with :func:`tfface.data.builtin.load_dataset`);
5. with ``export``, G (EMA weights, dropout off) as a TF Serving SavedModel under
   ``<out>/export/generator/1``: input ``synthetic_images`` [None, S, S, 3] float32 in [-1, 1], output
   ``refined_images`` of the same shape, checked in a fresh process;
6. ``<out>/report.json`` and ``<out>/history.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfface.methods.ganfaces.config import GANFacesRecipe

__all__ = ["export_generator", "image_grid", "run_recipe"]


def image_grid(columns: list[np.ndarray]) -> np.ndarray:
    """``[1, n * S, k * S, 3]`` uint8: one row per sample, one column per array ([n, S, S, 3] in [-1, 1])."""
    rows = np.concatenate([np.concatenate(list(c), axis=0) for c in columns], axis=1)
    return np.clip(np.round((rows + 1.0) * 127.5), 0, 255).astype(np.uint8)[None]


def _grid_callback(log_dir: Path, renders: np.ndarray, reals: np.ndarray | None, every: int):
    import keras
    import tensorflow as tf

    class ImageGrid(keras.callbacks.Callback):
        """``render | refined | paired real`` every ``every`` steps (and after the last)."""

        def __init__(self):
            super().__init__()
            self.writer = tf.summary.create_file_writer(str(log_dir / "images"))
            self.step = 0

        def write(self):
            refined = self.model.generate(renders, dropout=False)
            cols = [renders, refined] + ([reals] if reals is not None else [])
            with self.writer.as_default():
                tf.summary.image("pairs/render_refined_real", image_grid(cols), step=self.step)
            self.writer.flush()

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if self.step % every == 0:
                self.write()

        def on_train_end(self, logs=None):
            if self.step % every:
                self.write()

    return ImageGrid()


def export_generator(model, export_dir: str | os.PathLike, sample: np.ndarray) -> dict:
    """G (EMA weights, inference mode) as a TF Serving SavedModel, checked in a fresh process."""
    from tfface.export import check_saved_model, export_saved_model
    from tfface.methods.ganfaces.model import REFINED_IMAGES, SYNTHETIC_IMAGES

    s = model.config.image_size
    version_dir = export_saved_model(model.generator_model(), export_dir, "generator", input_name=SYNTHETIC_IMAGES,
                                     output_name=REFINED_IMAGES, input_shape=(s, s, 3),
                                     warmup_inputs=np.asarray(sample, np.float32), overwrite=True)
    check = check_saved_model(version_dir, expected_inputs={SYNTHETIC_IMAGES: [None, s, s, 3]},
                              expected_outputs={REFINED_IMAGES: [None, s, s, 3]})
    return {"saved_model": str(version_dir), "check_ok": bool(check["ok"]), "problems": check["problems"]}


def _embedder(recipe: GANFacesRecipe, cfg, domains: dict, verbose) -> tuple:
    """``(builder of C, report)``: a loaded ``.keras`` file or the pretrained small CNN."""
    from tfface.methods.ganfaces.nets import embedder

    spec = recipe.embedder
    if not cfg.flags.identity:
        return None, {"used": False}
    if spec.path:
        from tfface.keras_files import load_keras_file

        return (lambda: load_keras_file(spec.path, compile=False)), {"path": spec.path}
    from tfface.training.ganfaces import pretrain_embedder

    data = domains["embedder"]
    weights, hist = pretrain_embedder(cfg, data.images, data.labels, spec.embedding_dim, spec.epochs,
                                      spec.batch_size, verbose=verbose)

    def build():
        c = embedder(cfg.crop_size, spec.embedding_dim)
        c.set_weights(weights)
        return c

    return build, {"pretrained_on": int(data.num_classes), "final_accuracy": hist.get("accuracy", [None])[-1]}


def run_recipe(recipe: GANFacesRecipe, out_dir: str | os.PathLike | None = None, verbose: int | str = "auto") -> dict:
    """Run a GANFaces recipe (see the module docstring); returns the summary written to ``report.json``."""
    import keras

    from tfface.atomic import atomic_path
    from tfface.data.builtin import save_dataset
    from tfface.eval.report import write_json
    from tfface.methods.ganfaces.data import render_domains, to_unit
    from tfface.training.driver import write_record
    from tfface.training.ganfaces import generate, train_ganfaces

    out = Path(out_dir or recipe.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    quiet = 0 if verbose == 0 else 2
    cfg = recipe.model_config()
    domains = render_domains(recipe.data, cfg.image_size, progress=verbose != 0)
    build_c, c_report = _embedder(recipe, cfg, domains, quiet)
    t = recipe.train
    grid_pairs = "paired_synthetic" in domains
    renders = to_unit((domains["paired_synthetic"] if grid_pairs else domains["synthetic"]).images[:8])
    reals = to_unit(domains["paired_real"].images[:8]) if grid_pairs else None
    callbacks = [keras.callbacks.TensorBoard(str(out / "tensorboard")),
                 _grid_callback(out / "tensorboard", renders, reals, t.image_every)]
    epochs = max(1, min(20, t.iterations // max(1, t.image_every)))
    res = train_ganfaces(cfg, domains, t.iterations, t.batch_size, embedder=build_c, callbacks=callbacks,
                         verbose=quiet, steps_per_epoch=max(1, t.iterations // epochs))
    model = res.model
    with atomic_path(out / "ganfaces.weights.h5", suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    g = recipe.generate
    generated = generate(model, domains["synthetic"], g.identities, g.images_per_identity, progress=verbose != 0)
    gen_path = save_dataset(generated, out / "ganfaces_generated.npz")
    history = res.history["ganfaces"]
    report = {"name": recipe.name, "variant": cfg.variant, "image_size": cfg.image_size,
              "domains": {k: {"images": len(v), "identities": int(len(np.unique(v.identities)))}
                          for k, v in domains.items()},
              "pairs": len(domains.get("paired_real", ())),  # spec A21: the pair count is reported
              "embedder": c_report, "final": {k: v[-1] for k, v in history.items()},
              "steps": res.steps, "train_seconds": round(res.seconds, 1),
              "seconds_per_step": round(res.seconds_per_step, 4),
              "generated": {"path": str(gen_path), "identities": g.identities,
                            "images_per_identity": g.images_per_identity}}
    if recipe.export:
        report["export"] = export_generator(model, out / "export", renders[:4])
    write_record(out / "history.json", recipe, res.history, res.seconds,
                 model.distribute_strategy.num_replicas_in_sync, cfg.seed)
    write_json(report, out / "report.json")
    return report
