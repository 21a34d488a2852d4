"""tf.data input pipelines for training and embedding face images.

:func:`make_dataset` turns images (a uint8 array [N, H, W, 3], or a list of image files decoded with
``tf.io``) and integer labels into batches of ``(float32 images, int64 labels)``:

- ``batch_size`` is the GLOBAL batch; under a ``tf.distribute`` strategy it must divide by the number of
  replicas, and Keras' ``fit`` (or ``strategy.experimental_distribute_dataset``) splits it;
- when training: a fresh permutation every epoch (or P identities x K images batches with ``pk``),
  ``drop_remainder=True`` so every step has the same shape, and augmentation as vectorised ops on whole
  batches (random horizontal flip, a small random translation with reflected borders, brightness and
  contrast), all drawn from ``seed``: the same seed gives the same batches, epoch by epoch;
- preprocessing by name (``"arcface"``: ``(x / 255 - 0.5) / 0.5``; ``"imagenet"``: ImageNet mean/std);
- ``options.deterministic`` set explicitly and ``prefetch(AUTOTUNE)`` last.

:func:`identity_balanced_batches` gives the same P x K index batches as numpy arrays.

Example::

    ds = make_dataset(images, labels, batch_size=256, training=True, seed=0, strategy=strategy)
    model.fit(ds, epochs=10)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from PIL import Image

from tfface.errors import ConfigError, DataError

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
PREPROCESSING: dict[str, tuple[np.ndarray, np.ndarray]] = {
    # name: (scale, offset) per channel, applied as x * scale + offset to pixel values in [0, 255]
    "arcface": (np.full(3, 1 / 127.5, np.float32), np.full(3, -1.0, np.float32)),  # (x / 255 - 0.5) / 0.5
    "imagenet": (1 / (255 * _IMAGENET_STD), -_IMAGENET_MEAN / _IMAGENET_STD),  # (x / 255 - mean) / std
}
#: Extensions ``tf.io.decode_image`` reads (not PGM: load such folders with ``ImageFolder.load``).
TF_DECODABLE = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def preprocess(images: tf.Tensor, name: str = "arcface") -> tf.Tensor:
    """Pixel values in [0, 255] (uint8 or float) -> float32 normalised by the named preprocessing.

    ``"arcface"``: ``(x / 255 - 0.5) / 0.5``, in [-1, 1]; ``"imagenet"``: ``(x / 255 - mean) / std``
    with the ImageNet RGB mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
    """
    if name not in PREPROCESSING:
        raise ConfigError(f"preprocessing: unknown {name!r}; known: {sorted(PREPROCESSING)}")
    scale, offset = PREPROCESSING[name]
    return tf.cast(images, tf.float32) * scale + offset


def augment_batch(images: tf.Tensor, seed: tf.Tensor, max_shift: float = 0.06, brightness: float = 0.1,
                  contrast: tuple[float, float] = (0.8, 1.2)) -> tf.Tensor:
    """Augment a float32 batch [B, H, W, 3] of pixel values in [0, 255], image by image, in one go.

    Random horizontal flip (p = 0.5), a random translation by up to ``max_shift`` of the size in each
    direction (whole pixels, borders reflected: a small random crop), a brightness shift of up to
    ``brightness`` x 255 and a contrast factor in ``contrast`` around each image's mean; clipped to
    [0, 255]. ``seed`` is a stateless seed (shape [2]): the same seed gives the same result.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    s = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)
    flip = tf.random.stateless_uniform([b, 1, 1, 1], s[0]) < 0.5
    images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    max_dy = tf.cast(tf.cast(h, tf.float32) * max_shift, tf.int32)
    max_dx = tf.cast(tf.cast(w, tf.float32) * max_shift, tf.int32)
    dy = tf.random.stateless_uniform([b], s[1], minval=-max_dy, maxval=max_dy + 1, dtype=tf.int32)
    dx = tf.random.stateless_uniform([b], s[2], minval=-max_dx, maxval=max_dx + 1, dtype=tf.int32)
    one, zero = tf.ones([b]), tf.zeros([b])
    # output (x, y) samples input (x - dx, y - dy): the content moves by (dx, dy)
    transforms = tf.stack([one, zero, -tf.cast(dx, tf.float32), zero, one, -tf.cast(dy, tf.float32), zero, zero],
                          axis=1)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.stack([h, w]), fill_value=0.0,
        interpolation="NEAREST", fill_mode="REFLECT",
    )
    delta = tf.random.stateless_uniform([b, 1, 1, 1], s[3], -brightness, brightness) * 255.0
    factor = tf.random.stateless_uniform([b, 1, 1, 1], s[4], contrast[0], contrast[1])
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value((images - mean) * factor + mean + delta, 0.0, 255.0)


class _PKSampler:
    """Draws one batch of P identities x K images (indices into ``labels``) from a numpy generator."""

    def __init__(self, labels: np.ndarray, p: int, k: int):
        if isinstance(p, bool) or isinstance(k, bool) or int(p) != p or int(k) != k or p < 1 or k < 1:
            raise ConfigError(f"identity-balanced batches: P and K must be positive integers, got P={p!r}, K={k!r}")
        self.p, self.k = int(p), int(k)
        self.order = np.argsort(labels, kind="stable")
        self.ids, self.starts, self.counts = np.unique(labels[self.order], return_index=True, return_counts=True)
        if len(self.ids) < self.p:
            raise DataError(f"labels: {len(self.ids)} identities, fewer than P={self.p} per batch")

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        chosen = rng.choice(len(self.ids), self.p, replace=False)
        out = np.empty(self.p * self.k, np.int64)
        for j, c in enumerate(chosen):
            count = int(self.counts[c])
            pos = rng.choice(count, self.k, replace=count < self.k)  # with replacement only when too few
            out[j * self.k : (j + 1) * self.k] = self.order[self.starts[c] + pos]
        return out


def _as_labels(labels) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise DataError(f"labels: must be a 1-D integer array, got {arr.dtype} shape {arr.shape}")
    return arr.astype(np.int64)


def identity_balanced_batches(labels: np.ndarray | Sequence[int], p: int, k: int, seed: int = 0,
                              num_batches: int | None = None) -> np.ndarray:
    """Index batches of P identities x K images each: int64 array (num_batches, P * K).

    Each batch holds P distinct identities (in random order), K images of each, consecutive. An identity
    with at least K images gives K distinct ones; one with fewer is sampled with replacement. The
    default ``num_batches`` is one epoch's worth, ``max(1, N // (P * K))``. Raises :class:`DataError`
    when there are fewer than P identities.
    """
    labels = _as_labels(labels)
    sampler = _PKSampler(labels, p, k)
    if num_batches is None:
        num_batches = max(1, len(labels) // (sampler.p * sampler.k))
    if int(num_batches) != num_batches or num_batches < 1:
        raise ConfigError(f"identity-balanced batches: num_batches must be a positive integer, got {num_batches!r}")
    rng = np.random.default_rng(seed)
    return np.stack([sampler.sample(rng) for _ in range(int(num_batches))])


def _size_hw(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    h, w = (image_size, image_size) if np.ndim(image_size) == 0 else tuple(image_size)
    if int(h) != h or int(w) != w or h < 1 or w < 1:
        raise ConfigError(f"image_size: must be a positive int or (h, w), got {image_size!r}")
    return int(h), int(w)


def _resize_uint8(images: tf.Tensor, hw: tuple[int, int]) -> tf.Tensor:
    resized = tf.image.resize(images, hw, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def _check_paths(paths: list[str]) -> tuple[int, int]:
    for path in paths:
        if not path.lower().endswith(TF_DECODABLE):
            raise DataError(f"{path}: tf.io cannot decode this format (readable: {list(TF_DECODABLE)}); "
                            f"load the images with ImageFolder.load() and pass the array")
    for path in paths:
        if not os.path.isfile(path):
            raise DataError(f"{path}: image file not found")
    try:
        with Image.open(paths[0]) as im:
            return im.size[1], im.size[0]
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{paths[0]}: unreadable or corrupt image ({e})") from e


def _path_loader(paths: tf.Tensor, labels: tf.Tensor, resize: tuple[int, int] | None, expect: tuple[int, int]):
    def load(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        path = tf.gather(paths, i)
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        if resize is not None:
            image = _resize_uint8(image, resize)
        else:
            shape = tf.shape(image)[:2]
            check = tf.debugging.Assert(tf.reduce_all(tf.equal(shape, expect)),
                                        ["image", path, "has size", shape, "expected", list(expect),
                                         "(pass image_size to resize)"])
            with tf.control_dependencies([check]):
                image = tf.identity(image)
        return tf.ensure_shape(image, [*(resize or expect), 3]), tf.gather(labels, i)

    return load


def make_dataset(
    images: np.ndarray | Sequence[str | os.PathLike],
    labels: np.ndarray | Sequence[int],
    batch_size: int,
    training: bool = False,
    augment: bool = True,
    seed: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    preprocessing: str = "arcface",
    image_size: int | tuple[int, int] | None = None,
    pk: tuple[int, int] | None = None,
    deterministic: bool = True,
    epochs: int | None = None,
    initial_epoch: int = 0,
) -> tf.data.Dataset:
    """Batches of ``(float32 images [B, H, W, 3], int64 labels [B])``; ``batch_size`` is the GLOBAL batch.

    Args:
      images: uint8 array [N, H, W, 3] (kept in memory; gathered batch by batch), or N image paths
        (JPEG/PNG/BMP/GIF, decoded with ``tf.io`` in parallel; all of one size unless ``image_size``).
      labels: N integer labels.
      batch_size: the global batch size; with ``strategy`` it must divide by ``num_replicas_in_sync``.
      training: shuffle every epoch, ``drop_remainder=True``, augment. Otherwise the order is kept and the
        last batch may be smaller.
      augment: apply :func:`augment_batch` when training.
      seed: seeds the shuffle, the P x K draws and the augmentation; each epoch draws anew,
        reproducibly.
      strategy: a ``tf.distribute.Strategy`` to check the global batch against; the dataset is returned
        undistributed (``fit`` distributes it; custom loops call ``strategy.experimental_distribute_dataset``).
      preprocessing: ``"arcface"`` or ``"imagenet"`` (see :func:`preprocess`).
      image_size: int or (h, w): resize (bilinear, antialiased) to this size.
      pk: ``(P, K)``: training batches of P identities x K images (``P * K == batch_size``), one epoch
        being ``N // batch_size`` batches.
      deterministic: ``tf.data.Options.deterministic`` (set explicitly either way).
      epochs, initial_epoch: training only. With ``epochs``, the dataset holds epochs
        ``initial_epoch .. epochs - 1`` back to back (pass ``steps_per_epoch=N // batch_size`` to
        ``fit``), and every random draw of epoch ``e`` (the order, the P x K draws, the augmentation) is a
        pure function of ``(seed, e)``: a run resumed at epoch ``e`` in a new process sees exactly the
        batches an uninterrupted run sees. Without ``epochs``, one epoch, re-iterated by ``fit``, draws
        anew on each iteration from the process's own random stream (reproducible from the start only).
    """
    if preprocessing not in PREPROCESSING:
        raise ConfigError(f"preprocessing: unknown {preprocessing!r}; known: {sorted(PREPROCESSING)}")
    labels = _as_labels(labels)
    n = len(labels)
    if n == 0:
        raise DataError("labels: the dataset is empty")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ConfigError(f"batch_size: must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    if strategy is not None and batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(f"batch_size: the global batch {batch_size} does not divide over "
                          f"{strategy.num_replicas_in_sync} replicas")
    if training and n < batch_size:
        raise DataError(f"batch_size: {batch_size} is larger than the {n} training images (no full batch)")
    hw = _size_hw(image_size)
    seed = int(seed)

    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) != n:
            raise DataError(f"images: expected uint8 (N, H, W, 3) matching {n} labels, got {images.dtype} "
                            f"{images.shape}")
        from_paths = False
    else:
        paths = [os.fspath(p) for p in images]
        if len(paths) != n:
            raise DataError(f"images: {len(paths)} paths for {n} labels")
        first_hw = _check_paths(paths)
        from_paths = True

    # index batches, each with a counter that seeds its random draws: P x K draws, a fresh permutation
    # per epoch, or the order as is
    nb = max(1, n // batch_size)
    if epochs is not None:
        if not training:
            raise ConfigError("epochs: a multi-epoch dataset is for training only")
        if isinstance(epochs, bool) or int(epochs) != epochs or not 0 <= int(initial_epoch) < int(epochs):
            raise ConfigError(f"epochs, initial_epoch: need 0 <= initial_epoch < epochs, got {initial_epoch}, {epochs}")
        epoch_ids = tf.data.Dataset.range(int(initial_epoch), int(epochs))
    if pk is not None:
        if not training:
            raise ConfigError("pk: identity-balanced batches are for training only")
        sampler = _PKSampler(labels, *pk)
        if sampler.p * sampler.k != batch_size:
            raise ConfigError(f"pk: P x K = {sampler.p} x {sampler.k} must equal batch_size {batch_size}")

        def draw(r: np.ndarray) -> np.ndarray:
            return sampler.sample(np.random.default_rng(int(r) & 0x7FFFFFFFFFFFFFFF))

        def draw_batch(r: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            idx = tf.numpy_function(draw, [r], tf.int64, stateful=False)
            return tf.ensure_shape(idx, [batch_size]), r

        if epochs is None:
            index = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(nb).map(draw_batch)
        else:  # batch b of epoch e draws with the counter e * nb + b, mixed with the seed
            index = (epoch_ids.flat_map(lambda e: tf.data.Dataset.range(e * nb, (e + 1) * nb))
                     .map(lambda c: draw_batch(c * 1_000_003 + seed)))
    elif training:
        def permutation(r: tf.Tensor) -> tf.data.Dataset:
            perm = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64),
                                                            seed=tf.stack([r, tf.constant(seed, tf.int64)]))
            batches = tf.data.Dataset.from_tensor_slices(perm).batch(batch_size, drop_remainder=True)
            counters = tf.data.Dataset.range(nb).map(lambda b: r * nb + b)
            return tf.data.Dataset.zip((batches, counters))

        if epochs is None:
            index = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1).flat_map(permutation)
        else:
            index = epoch_ids.flat_map(permutation)
    else:
        index = tf.data.Dataset.range(n).batch(batch_size)
        index = tf.data.Dataset.zip((index, tf.data.Dataset.range(nb + 1)))

    labels_t = tf.constant(labels)
    if from_paths:
        load = _path_loader(tf.constant(paths), labels_t, hw, first_hw)
        counters = index.map(lambda i, c: c)
        ds = (index.map(lambda i, c: i).unbatch().map(load, num_parallel_calls=tf.data.AUTOTUNE)
              .batch(batch_size, drop_remainder=training))
        ds = tf.data.Dataset.zip((ds, counters))
    else:
        images_t = tf.convert_to_tensor(images)

        def gather(i: tf.Tensor, c: tf.Tensor) -> tuple[tuple[tf.Tensor, tf.Tensor], tf.Tensor]:
            x = tf.gather(images_t, i)
            if hw is not None and tuple(images.shape[1:3]) != hw:
                x = _resize_uint8(x, hw)
            return (x, tf.gather(labels_t, i)), c

        ds = index.map(gather, num_parallel_calls=tf.data.AUTOTUNE)

    if training and augment:
        def augment_and_preprocess(xy, r):
            return preprocess(augment_batch(tf.cast(xy[0], tf.float32), tf.stack([r, tf.constant(seed, tf.int64)])),
                              preprocessing), xy[1]

        if epochs is None:
            randoms = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True)
            ds = tf.data.Dataset.zip((ds.map(lambda xy, c: xy), randoms))
        else:  # the augmentation of a batch is seeded by its counter: a function of (seed, epoch, batch)
            ds = ds.map(lambda xy, c: (xy, c * 7_919 + seed + 1))
        ds = ds.map(augment_and_preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        def preprocess_only(xy, c):
            return preprocess(xy[0], preprocessing), xy[1]

        ds = ds.map(preprocess_only, num_parallel_calls=tf.data.AUTOTUNE)

    # the number of batches, which Keras reads to size an epoch (the random draws hide it)
    num_batches = n // batch_size if training else -(-n // batch_size)
    if epochs is not None:
        num_batches *= int(epochs) - int(initial_epoch)
    ds = ds.apply(tf.data.experimental.assert_cardinality(num_batches))
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
