"""Train a feature translator (R3AN, a Table-3 ablation, the FC baseline, or the linear baseline).

:func:`train_translator` builds the :class:`tfface.methods.r3an.R3AN` trainer under the current
``tf.distribute`` strategy, fits it with ``model.fit`` on the paired triplets and returns the
deployable translator (``source_features -> target_features``). With ``out_dir`` it writes
TensorBoard logs (losses, weight histograms, and the paper's Fig. 4 grid: each real 56x56 face next to
G(source feature)), ``history.json`` and ``translator.keras``. ``variant="linear"`` solves the ridge
least-squares baseline in closed form instead.

Example:
  >>> import numpy as np
  >>> from tfface.methods.r3an.data import PairedFeatures
  >>> from tfface.methods.r3an import R3ANConfig
  >>> from tfface.training.r3an import train_translator
  >>> rng = np.random.default_rng(0)
  >>> pairs = PairedFeatures(rng.integers(0, 255, (8, 56, 56, 3), dtype=np.uint8),
  ...                        rng.normal(size=(8, 16)).astype("float32"), rng.normal(size=(8, 16)).astype("float32"),
  ...                        np.arange(8))
  >>> res = train_translator(R3ANConfig(variant="fc", source_dim=16, target_dim=16, fc_hidden=8), pairs,
  ...                        epochs=1, batch_size=4)
  >>> tuple(res.translator(pairs.source).shape)
  (8, 16)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfface.atomic import atomic_path
from tfface.errors import ConfigError, DataError
from tfface.methods.r3an.data import PairedFeatures


@dataclass
class TranslatorResult:
    variant: str
    translator: Any  # keras.Model source_features -> target_features (unit rows)
    model: Any = None  # the R3AN trainer (None for the linear baseline)
    history: dict = field(default_factory=dict)
    seconds: float = 0.0
    parameters: int = 0
    info: dict = field(default_factory=dict)  # the linear baseline's ridge and how it was chosen


def r3an_optimizers(model, total_steps: int) -> dict:
    """``{g_optimizer, e_optimizer, d_optimizer}`` for ``model.compile``: the config's optimizer
    (``sgd`` with momentum, or ``adam`` with beta_1 0.5) with the piecewise schedule over
    ``total_steps`` batches (boundaries scaled by each optimizer's applications per batch);
    ``d_optimizer="adam"`` gives D Adam(2e-4, beta_1 0.5) (spec A10). Weight decay is coupled and
    applied by the model (``R3AN.coupled_weight_decay``)."""
    from tfface.training.optimizers import OptimizerSpec, make_optimizer

    cfg = model.config
    spec = OptimizerSpec(cfg.optimizer, cfg.learning_rate, schedule="piecewise", boundaries=tuple(cfg.lr_boundaries),
                         decay=cfg.lr_decay, momentum=cfg.momentum, beta_1=0.5 if cfg.optimizer == "adam" else 0.9)
    out = {}
    for net, applies in model.applies_per_batch().items():
        name = "fc_optimizer" if model.mlp is not None else f"{net}_optimizer"
        if net == "d" and cfg.d_optimizer == "adam":
            out["d_optimizer"] = make_optimizer(OptimizerSpec("adam", 2e-4, beta_1=0.5), total_steps, name=name)
        else:
            out[f"{net}_optimizer"] = make_optimizer(spec, total_steps, step_scale=applies, name=name)
    return out


def reconstruction_grid(model, pairs: PairedFeatures, n: int = 8) -> np.ndarray:
    """Fig. 4 of the paper: ``[real_0, G(x_0), real_1, G(x_1), ...]`` as float images in [-1, 1]."""
    if model.G is None:
        raise ConfigError("reconstruction grid: the FC baseline has no generator")
    n = min(n, len(pairs))
    real = pairs.faces[:n].astype(np.float32) / 127.5 - 1.0
    fake = np.asarray(model.G(pairs.source[:n], training=False))
    return np.stack([real, fake], axis=1).reshape(2 * n, *real.shape[1:])


def train_translator(config, pairs: PairedFeatures, epochs: int, batch_size: int = 64,
                     out_dir: str | Path | None = None, strategy=None, verbose: int | str = 0,
                     ridge: float | str = "cv", bn_recalibration: bool = True, record: Any = None
                     ) -> TranslatorResult:
    """Train ``config`` (an :class:`~tfface.methods.r3an.R3ANConfig`, or ``"linear"``) on ``pairs``.

    ``bn_recalibration``: after training, re-estimate E's BatchNorm statistics on G's faces (see
    :meth:`~tfface.methods.r3an.R3AN.recalibrate_batch_norm`); it matters only for variants whose E
    also trains on real faces (``use_rep``). ``record``: what ``history.json`` records as the recipe
    (a recipe dataclass or dict; default the config itself)."""
    import keras

    from tfface.methods.r3an import R3AN, fit_linear_translator
    from tfface.training.driver import Run, Stage

    t0 = time.perf_counter()
    if config == "linear" or getattr(config, "variant", None) == "linear":
        choice = {}
        if ridge == "cv":
            from tfface.methods.r3an import select_ridge

            folds = min(5, len(np.unique(pairs.labels)))
            if folds < 2:
                raise ConfigError("ridge: 'cv' needs triplets of at least 2 identities; give a number")
            choice = select_ridge(pairs.source, pairs.target, pairs.labels, folds=folds)
            ridge = choice["ridge"]
        tr = fit_linear_translator(pairs.source, pairs.target, ridge=ridge)
        result = TranslatorResult("linear", tr, None, {}, time.perf_counter() - t0, int(tr.count_params()),
                                  {"ridge": ridge, "ridge_selection": choice or None})
        if out_dir is not None:  # the same artefacts as a trained translator: the record and the model
            from tfface.training.driver import write_record

            Path(out_dir).mkdir(parents=True, exist_ok=True)
            write_record(Path(out_dir) / "history.json", record if record is not None else {"variant": "linear"},
                         {}, result.seconds, 1, 0, ridge=ridge, ridge_selection=choice or None)
            with atomic_path(Path(out_dir) / "translator.keras", suffix=".keras") as tmp:
                tr.save(tmp)
        return result
    if pairs.source_dim != config.source_dim or pairs.target_dim != config.target_dim:
        raise DataError(f"paired features are {pairs.source_dim} -> {pairs.target_dim}-D but the R3AN config "
                        f"expects {config.source_dim} -> {config.target_dim}")
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    run = Run(seed=config.seed, strategy=strategy)
    steps = len(pairs) // batch_size
    with run.scope():
        model = R3AN(config)
        model.compile(**r3an_optimizers(model, total_steps=max(1, steps * epochs)))
    callbacks: list = []
    if out_dir is not None:
        from tfface.training.callbacks import ImageGridCallback

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.TensorBoard(str(out / "tensorboard"), histogram_freq=1))
        if model.G is not None:
            callbacks.append(ImageGridCallback(lambda m: reconstruction_grid(m, pairs), str(out / "tensorboard"),
                                               every_n_epochs=1, max_images=16, name="reconstruction"))
    ds = pairs.dataset(batch_size, shuffle=True, seed=config.seed)
    try:
        history = run.fit(model, [Stage("train", ds, epochs)], callbacks, verbose=verbose)["train"]
    except DataError as e:
        raise DataError(f"R3AN {config.variant}: {e}") from None
    if bn_recalibration and model.use_rep and model.E is not None:
        model.recalibrate_batch_norm(pairs.dataset(batch_size, shuffle=True, seed=config.seed + 1))
    translator = model.translator()
    params = int(sum(int(np.prod(w.shape)) for w in translator.trainable_weights))
    result = TranslatorResult(config.variant, translator, model, history, time.perf_counter() - t0, params)
    if out_dir is not None:
        run.write_record(out / "history.json", record if record is not None else config, {"train": history},
                         epochs=epochs, batch_size=batch_size)
        with atomic_path(out / "translator.keras", suffix=".keras") as tmp:
            translator.save(tmp)
    return result
