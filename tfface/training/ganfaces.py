"""Training GANFaces and generating its dataset.

- :func:`pretrain_embedder`: the frozen identity embedder C (spec A15: softmax on real data only), the
  small CNN of :func:`tfface.methods.ganfaces.nets.embedder`, trained on C's own view of an image (a
  random crop to ``crop_size`` and a flip, standardised as :meth:`GANFaces.c_inputs` does);
- :func:`train_ganfaces`: a :class:`~tfface.methods.ganfaces.GANFaces` variant with ``model.fit`` over
  :func:`~tfface.methods.ganfaces.data.ganfaces_batches` (:class:`~tfface.training.driver.Run`, one
  :class:`~tfface.training.driver.Stage`), the learning rate halved at the paper's fractions of the run;
- :func:`generate`: N identities x K refined images (the EMA weights, dropout on) as a
  :class:`~tfface.data.builtin.FaceDataset` ("GANFaces-mini"), with a progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfface.errors import ConfigError, DataError
from tfface.methods.ganfaces.config import GANFacesConfig

__all__ = ["GANFacesResult", "generate", "pretrain_embedder", "train_ganfaces"]


@dataclass
class GANFacesResult:
    model: Any  # the trained GANFaces
    history: dict = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(self.steps, 1)


def _c_view(config: GANFacesConfig, training: bool):
    """``images [B, S, S, 3] in [-1, 1] -> C's input`` as :meth:`GANFaces.c_inputs` (random crop/flip when
    ``training``, else the centre crop)."""
    import tensorflow as tf

    k, s = config.crop_size, config.image_size

    def view(x, seed):
        img = tf.clip_by_value((x + 1.0) * 127.5, 0.0, 255.0)
        if training:
            img = tf.image.stateless_random_crop(img, [tf.shape(img)[0], k, k, 3], seed=seed)
            if config.c_flip:
                img = tf.image.stateless_random_flip_left_right(img, seed=seed + 1)
        else:
            o = (s - k) // 2
            img = img[:, o:o + k, o:o + k]
        return tf.image.per_image_standardization(img) if config.c_standardize else img / 127.5 - 1.0

    return view


def pretrain_embedder(config: GANFacesConfig, images, labels, embedding_dim: int = 64, epochs: int = 10,
                      batch_size: int = 64, verbose: int | str = 0) -> tuple[list, dict]:
    """``(C's weights, history)`` after softmax training (Adam 1e-3, a scale-16 linear head on the
    L2-normalised embedding) on ``images`` (real faces, [N, S, S, 3] uint8 or [-1, 1]) with ``labels``.
    Build C with :func:`tfface.methods.ganfaces.nets.embedder` (``config.crop_size``, ``embedding_dim``) and
    set these weights to use it."""
    import keras
    import tensorflow as tf

    from tfface.methods.ganfaces.data import to_unit
    from tfface.methods.ganfaces.nets import embedder

    x, y = to_unit(images), np.asarray(labels, np.int64)
    if len(x) != len(y) or not len(x):
        raise DataError(f"embedder data: {len(x)} images and {len(y)} labels")
    classes = int(y.max()) + 1
    if classes < 2:
        raise DataError("embedder data: C's softmax pretraining needs at least 2 identities")
    keras.utils.set_random_seed(config.seed)
    c = embedder(config.crop_size, embedding_dim)
    inp = keras.Input(c.inputs[0].shape[1:])
    net = keras.Model(inp, keras.layers.Dense(classes, name="logits")(keras.layers.Rescaling(16.0)(c(inp))))
    net.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"], jit_compile=False)
    view = _c_view(config, training=True)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=config.seed).batch(batch_size)
    ds = ds.enumerate().map(lambda i, b: (view(b[0], tf.stack([tf.constant(config.seed, tf.int64), i])), b[1]))
    if epochs < 1:
        return c.get_weights(), {}
    h = net.fit(ds.prefetch(tf.data.AUTOTUNE), epochs=epochs, verbose=verbose)
    return c.get_weights(), {k: [float(v) for v in vals] for k, vals in h.history.items()}


def train_ganfaces(config: GANFacesConfig, domains: dict, iterations: int, batch_size: int = 16,
                   embedder: Callable[[], Any] | None = None, strategy=None, callbacks=(), verbose: int | str = 0,
                   steps_per_epoch: int | None = None) -> GANFacesResult:
    """Train ``config`` for ``iterations`` steps on ``domains`` (arrays or FaceDatasets under ``synthetic``
    (with its labels as identities), ``real`` and, for L_DP, ``paired_synthetic`` / ``paired_real``).
    ``embedder()`` builds the frozen C (called inside the strategy scope; not needed by ``no_c``)."""
    from tfface.methods.ganfaces import GANFaces
    from tfface.methods.ganfaces.data import ganfaces_batches
    from tfface.training.driver import Run, Stage

    if iterations < 1:
        raise ConfigError(f"iterations: must be >= 1, got {iterations}")

    def images(key):
        d = domains.get(key)
        return None if d is None else np.asarray(getattr(d, "images", d))

    syn = domains["synthetic"]
    ids = np.asarray(domains.get("identities", getattr(syn, "labels", None)))
    num_ids = int(ids.max()) + 1
    if "real" not in domains:
        raise DataError("real: the unpaired real domain is missing; D_R needs real images")
    paired = config.flags.pair_matching
    if paired and domains.get("paired_synthetic") is None:
        raise DataError(f"paired_synthetic: variant {config.variant!r} trains L_DP and needs paired renders")
    ds = ganfaces_batches(images("synthetic"), ids, images("real"), images("paired_synthetic") if paired else None,
                          images("paired_real") if paired else None, batch_size=batch_size,
                          crop_size=config.crop_size, num_identities=num_ids, seed=config.seed)
    run = Run(seed=config.seed, strategy=strategy)
    with run.scope():
        c = embedder() if embedder is not None and config.flags.identity else None
        model = GANFaces(config, num_identities=num_ids, embedder=c)
        model.compile(total_steps=iterations)
    steps = min(iterations, steps_per_epoch or iterations)
    t0 = time.perf_counter()
    history = run.fit(model, [Stage("ganfaces", ds, max(1, iterations // steps), steps_per_epoch=steps)],
                      callbacks=list(callbacks), verbose=verbose)
    return GANFacesResult(model, history, time.perf_counter() - t0, steps * max(1, iterations // steps))


def generate(model, synthetic, identities: int, images_per_identity: int, batch_size: int = 256,
             progress: bool = True, ema: bool = True, dropout: bool | None = None):
    """Refine the first ``images_per_identity`` renders of each of the first ``identities`` labels of the
    ``synthetic`` FaceDataset: a FaceDataset of uint8 images with the renders' labels, identities,
    landmarks and nuisance parameters (``config=None``: the images are G's, not the renderer's)."""
    from tqdm.auto import tqdm

    from tfface.data.builtin import FaceDataset

    labels = np.asarray(synthetic.labels)
    rows = []
    for label in range(int(identities)):
        own = np.flatnonzero(labels == label)[:int(images_per_identity)]
        if len(own) < images_per_identity:
            raise DataError(f"generate: identity {label} has {len(own)} renders, {images_per_identity} asked")
        rows.append(own)
    index = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    if not len(index):
        raise DataError("generate: no images asked (identities x images_per_identity = 0)")
    from tfface.methods.ganfaces.data import to_unit

    src = synthetic.subset(index)
    out = np.empty(src.images.shape, np.uint8)
    with tqdm(total=len(index), desc="generate GANFaces", unit="img", disable=not progress) as bar:
        for i in range(0, len(index), batch_size):
            refined = model.generate(to_unit(src.images[i:i + batch_size]), ema=ema, dropout=dropout,
                                     batch_size=batch_size)
            out[i:i + batch_size] = np.clip(np.round((refined + 1.0) * 127.5), 0, 255).astype(np.uint8)
            bar.update(len(refined))
    return FaceDataset(out, src.labels, src.identities, src.landmarks5, src.nuisance, None)
