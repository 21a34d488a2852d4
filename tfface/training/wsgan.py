"""Training WSGAN and its deterministic baselines on features (the spec's section 8.1 models).

- :func:`pretrain`: M0, "Pretraining": F and W_C by softmax on the strong modality only (spec A4: WSGAN
  starts from it); scoring then uses F for both modalities;
- :func:`train_wsgan`: a :class:`~tfface.methods.wsgan.WSGAN` variant (M4 ``wsgan``, M3 ``wsgan_no_e``,
  M1 ``deterministic``, Table 3's ``lc_only``) from the pretrained F and W_C, with ``model.fit`` over the
  alternating pipeline, under an optional strategy;
- :func:`train_class_mean_mapper`: M2, a deterministic G regressed (MSE) onto the mean pretrained strong
  feature of the query's training identity, F fixed: the strongest "conditional mean" map.

Pretraining uses Adam (1e-3) for a few epochs: the paper does not say how F was pretrained, and its SGD
at 0.005 needs far more epochs than a benchmark grid affords on 2 cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfface.errors import ConfigError
from tfface.methods.wsgan.config import WSGANConfig

__all__ = ["WSGANResult", "pretrain", "train_class_mean_mapper", "train_wsgan"]


@dataclass
class WSGANResult:
    model: Any  # the WSGAN (for M2: a function weak inputs -> mapped features)
    history: dict = field(default_factory=dict)
    seconds: float = 0.0


def pretrain_networks(config: WSGANConfig, num_classes: int):
    import keras

    from tfface.methods.wsgan.nets import classifier, extractor

    f = extractor(config.input_shape or (config.strong_dim,), config.feature_dim, config.extractor_hidden,
                  name="extractor")
    c = classifier(config.feature_dim, num_classes)
    x = keras.Input(config.input_shape or (config.strong_dim,))
    return f, c, keras.Model(x, c(f(x)))


def pretrain(config: WSGANConfig, strong, strong_labels, num_classes: int, epochs: int, batch_size: int = 256,
             seed: int = 0, strategy=None, verbose: int | str = 0) -> tuple[list, list, dict]:
    """M0: ``(F weights, W_C weights, history)`` after softmax training on the strong modality."""
    import keras

    from tfface.training.driver import Run

    run = Run(seed=seed, strategy=strategy)
    with run.scope():
        f, c, net = pretrain_networks(config, num_classes)
        net.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"], jit_compile=False)
    h = net.fit(np.asarray(strong, np.float32), np.asarray(strong_labels), batch_size=batch_size, epochs=epochs,
                shuffle=True, verbose=verbose)
    return f.get_weights(), c.get_weights(), {k: [float(v) for v in vals] for k, vals in h.history.items()}


def train_wsgan(config: WSGANConfig, world: dict, num_classes: int, iterations: int,
                strong_batch_size: int = 256, weak_batch_size: int = 256, pretrained: tuple | None = None,
                strategy=None, callbacks=None, verbose: int | str = 0, steps_per_epoch: int | None = None
                ) -> WSGANResult:
    """Train ``config`` for ``iterations`` outer iterations (each ``n_critic`` D-phases + one G-phase).

    ``world``: ``train_strong``, ``train_strong_labels``, ``train_weak``, ``train_weak_labels``;
    ``pretrained``: ``(F weights, W_C weights)`` from :func:`pretrain`."""
    from tfface.methods.wsgan import WSGAN
    from tfface.methods.wsgan.data import alternating_batches
    from tfface.training.driver import Run

    if iterations < 1:
        raise ConfigError(f"iterations: must be >= 1, got {iterations}")
    run = Run(seed=config.seed, strategy=strategy)
    t0 = time.perf_counter()
    with run.scope():
        model = WSGAN(config, num_classes=num_classes)
        if pretrained is not None:
            model.F_s.set_weights(pretrained[0])
            if not config.shared_extractor:
                model.F_w.set_weights(pretrained[0])
            model.C.set_weights(pretrained[1])
        model.compile()
    ds = alternating_batches(world["train_strong"], world["train_strong_labels"], world["train_weak"],
                             world["train_weak_labels"], config.n_critic, config.z_dim, strong_batch_size,
                             weak_batch_size, seed=config.seed)
    steps = min(iterations, steps_per_epoch or iterations)
    h = model.fit(ds, steps_per_epoch=steps, epochs=max(1, iterations // steps), callbacks=callbacks or [],
                  verbose=verbose)
    return WSGANResult(model, {k: [float(v) for v in vals] for k, vals in h.history.items()},
                       time.perf_counter() - t0)


def train_class_mean_mapper(config: WSGANConfig, world: dict, pretrained: tuple, num_classes: int, epochs: int,
                            batch_size: int = 64, verbose: int | str = 0) -> WSGANResult:
    """M2: G without z, MSE onto the mean pretrained F feature of each weak sample's training identity."""
    import keras

    from tfface.methods.wsgan.nets import generator

    t0 = time.perf_counter()
    f, _, _ = pretrain_networks(config, num_classes)
    f.set_weights(pretrained[0])
    fs = f.predict(world["train_strong"], batch_size=4096, verbose=0)
    labels = world["train_strong_labels"]
    sums = np.zeros((num_classes, fs.shape[1]))
    np.add.at(sums, labels, fs)
    means = (sums / np.maximum(np.bincount(labels, minlength=num_classes), 1)[:, None]).astype(np.float32)
    fw = f.predict(world["train_weak"], batch_size=4096, verbose=0)
    target = means[world["train_weak_labels"]]
    g = generator(config.feature_dim, config.z_dim, config.width, use_z=False)
    z = np.zeros((len(fw), config.z_dim), np.float32)
    g.compile(keras.optimizers.Adam(1e-3), "mse")
    h = g.fit([fw, z], target, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=verbose)

    def mapper(x):
        cond = f.predict(np.asarray(x, np.float32), batch_size=4096, verbose=0)
        return g.predict([cond, np.zeros((len(cond), config.z_dim), np.float32)], batch_size=4096, verbose=0)

    return WSGANResult(mapper, {"loss": [float(v) for v in h.history["loss"]]}, time.perf_counter() - t0)
