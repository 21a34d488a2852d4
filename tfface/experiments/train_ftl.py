"""FTL runs: ``tfface train recipes/ftl_builtin.yaml``.

:func:`run_recipe` runs an :class:`tfface.methods.ftl.FTLRecipe`:

1. the data: a long-tailed set from the built-in world (``data``: regular and UR identities, images
   each, the biased and full variants; :mod:`tfface.data.long_tail`);
2. pretraining (Eq. 4, every module; alpha_reg = 0 for the ``sfmx`` variant), then the variant's
   schedule from it (FTL: Algorithm 1's alternating Stage 1 / Stage 2, ``UpdateStats`` at each Stage 1);
3. TensorBoard under ``<out>/tensorboard``: every stage's losses at its last iteration (``stage1/...``,
   ``stage2/...``, ``joint/...``), validation top-1 of regular and UR classes after every stage
   (``val/top1_regular``, ``val/top1_ur``), the weight-norm ratio rho and PCA's K, and a plot of the
   classifier's weight norm by class count (also ``<out>/weight_norms.png``);
4. the evaluation of the pretrained checkpoint and of the result
   (:func:`tfface.methods.ftl.evaluation.evaluate_networks`);
5. with ``export``, the embedder ``images`` -> ``embeddings`` (``f``) as a TF Serving SavedModel under
   ``<out>/export/embedder/1``, checked in a fresh process;
6. ``<out>/report.json`` and ``<out>/history.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfface.methods.ftl.config import FTLRecipe

__all__ = ["export_embedder", "plot_weight_norms", "run_recipe"]


def validation_top1(nets, data: dict) -> dict:
    from tfface.methods.ftl.evaluation import closed_set

    if not len(data.get("val_y", ())):
        return {}
    logits = np.asarray(nets(np.asarray(data["val_x"], np.float32), training=False))
    res = closed_set(logits, data["val_y"], data["num_regular"])
    return {"top1_regular": res["top1/regular"], "top1_ur": res["top1/ur"]}


def plot_weight_norms(nets, counts, num_regular: int, path: str | os.PathLike, title: str = ""):
    """A scatter of ``||w_j||`` against the class's training count (the paper's Fig. 1b as a plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfface.atomic import atomic_path

    norms = np.linalg.norm(nets.class_weights(), axis=1)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    idx = np.arange(len(norms))
    ax.scatter(idx[:num_regular], norms[:num_regular], s=6, label="regular")
    ax.scatter(idx[num_regular:], norms[num_regular:], s=6, label="under-represented")
    ax.set_xlabel("class (regular first)")
    ax.set_ylabel("||w_j||")
    ax.set_title(title or f"classifier weight norms (training images: {int(counts.max())} / {int(counts.min())})")
    ax.legend(loc="best")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


def run_recipe(recipe: FTLRecipe, out_dir: str | os.PathLike | None = None, verbose: int | str = "auto") -> dict:
    """Run an FTL recipe (see the module docstring); returns the summary written to ``report.json``."""
    import tensorflow as tf

    from tfface.data.long_tail import make_long_tail
    from tfface.eval.report import write_json
    from tfface.methods.ftl import VARIANTS, FTLNetworks
    from tfface.methods.ftl.evaluation import evaluate_networks
    from tfface.training.driver import write_record
    from tfface.training.ftl import pretrain, train_variant

    out = Path(out_dir or recipe.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    quiet = 0 if verbose == 0 else 2
    data = make_long_tail(recipe.data_config(), progress=verbose != 0)
    cfg = recipe.model_config()
    t = recipe.train
    variant = VARIANTS[recipe.variant]
    weights, pre_hist = pretrain(cfg, data, t.pretrain_epochs, alpha_reg=None if variant.m_l2 else 0.0,
                                 verbose=quiet)
    pre = FTLNetworks(cfg, data["num_classes"])
    pre.set_weights(weights)
    before = evaluate_networks(pre, data, recipe.eval.pairs)
    writer = tf.summary.create_file_writer(str(out / "tensorboard"))

    def on_stage(name, nets, step, logs):
        from tfface.methods.ftl.evaluation import weight_bias

        kind = name.split("/")[0]
        with writer.as_default():
            for key, values in logs.items():
                tf.summary.scalar(f"{kind}/{key}", values[-1], step=step)
            for key, value in validation_top1(nets, data).items():
                tf.summary.scalar(f"val/{key}", value, step=step)
            rho = weight_bias(nets.class_weights(), data["counts"], data["num_regular"])["rho"]
            if rho is not None:
                tf.summary.scalar("weights/rho", rho, step=step)

    res = train_variant(recipe.variant, cfg, data, weights, t.cycles, t.iterations, verbose=quiet, on_stage=on_stage)
    nets = res.nets
    after = evaluate_networks(nets, data, recipe.eval.pairs)
    plot = plot_weight_norms(nets, data["counts"], data["num_regular"], out / "weight_norms.png",
                             title=f"{recipe.variant}: classifier weight norms")
    with writer.as_default():
        for c, st in enumerate(res.stats):
            tf.summary.scalar("stats/pca_components", st["components"], step=c)
            tf.summary.scalar("stats/hard_samples", st["hard"], step=c)
        image = tf.image.decode_png(tf.io.read_file(str(plot)), channels=3)[None]
        tf.summary.image("weights/norm_by_class", image, step=t.cycles)
    writer.flush()
    from tfface.atomic import atomic_path

    with atomic_path(out / "ftl.weights.h5", suffix=".weights.h5") as tmp:
        nets.save_weights(tmp)
    report = {"name": recipe.name, "variant": recipe.variant, "classes": {"regular": data["num_regular"],
              "ur": data["num_classes"] - data["num_regular"]}, "pretrained": before, "trained": after,
              "stats": res.stats, "train_seconds": round(res.seconds, 1)}
    if recipe.export:
        report["export"] = export_embedder(nets, out / "export", data["test_x"][:8])
    write_record(out / "history.json", recipe, {"pretrain": pre_hist["pretrain"], **res.history}, res.seconds,
                 res.replicas, cfg.seed)
    write_json(report, out / "report.json")
    return report


def export_embedder(nets, export_dir: str | os.PathLike, sample: np.ndarray) -> dict:
    """The ``f`` embedder as a TF Serving SavedModel, checked in a fresh process."""
    from tfface.export import check_saved_model, export_saved_model
    from tfface.signatures import EMBEDDINGS, IMAGES

    shape = tuple(nets.config.input_shape)
    version_dir = export_saved_model(nets.embedding_model("f"), export_dir, "embedder", input_shape=shape,
                                     warmup_inputs=np.asarray(sample, np.float32), overwrite=True)
    check = check_saved_model(version_dir, expected_inputs={IMAGES: [None, *shape]},
                              expected_outputs={EMBEDDINGS: [None, nets.config.feature_dim]})
    return {"saved_model": str(version_dir), "check_ok": bool(check["ok"]), "problems": check["problems"]}
