"""tf.data input pipelines for training and embedding face images.

``make_dataset`` turns uint8 images (an array, or a list of file paths decoded with ``tf.io``) and
labels into batches of preprocessed float32 images: shuffled and augmented when training
(random horizontal flip, small translation, brightness/contrast; vectorised after batching),
batched with the GLOBAL batch size (a strategy splits it over replicas; ``drop_remainder`` when
training so every step has the same shape), deterministic order set explicitly, prefetched last.
``identity_balanced_batches`` builds P identities x K images index batches (for pair-based losses).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfface.errors import DataError

PREPROCESSING = {
    # name: (scale, offset) applied as x * scale + offset on [0, 255] inputs, per channel
    "arcface": (np.full(3, 1 / 127.5, np.float32), np.full(3, -1.0, np.float32)),  # (x/255 - 0.5) / 0.5
    "imagenet": (
        1 / (255 * np.array([0.229, 0.224, 0.225], np.float32)),
        -np.array([0.485, 0.456, 0.406], np.float32) / np.array([0.229, 0.224, 0.225], np.float32),
    ),
}


def preprocess(images: tf.Tensor, name: str = "arcface") -> tf.Tensor:
    """uint8 or [0, 255] float images -> float32 normalised (``arcface``: [-1, 1]; ``imagenet``: mean/std)."""
    if name not in PREPROCESSING:
        raise DataError(f"preprocessing: unknown {name!r}; known: {sorted(PREPROCESSING)}")
    scale, offset = PREPROCESSING[name]
    return tf.cast(images, tf.float32) * scale + offset


def augment(images: tf.Tensor, seed: tf.Tensor, max_shift: float = 0.06) -> tf.Tensor:
    """Random flip, translation (reflect padding) and brightness/contrast on a float batch in [-1, 1]."""
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    s = tf.random.experimental.stateless_split(seed, 4)
    flip = tf.random.stateless_uniform([b, 1, 1, 1], s[0]) < 0.5
    images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    pad_h = tf.cast(tf.cast(h, tf.float32) * max_shift, tf.int32)
    pad_w = tf.cast(tf.cast(w, tf.float32) * max_shift, tf.int32)
    padded = tf.pad(images, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]], mode="REFLECT")
    offs = tf.random.stateless_uniform([2], s[1], maxval=tf.int32.max, dtype=tf.int32)
    oy = offs[0] % (2 * pad_h + 1)
    ox = offs[1] % (2 * pad_w + 1)
    images = padded[:, oy : oy + h, ox : ox + w, :]
    bright = tf.random.stateless_uniform([b, 1, 1, 1], s[2], -0.15, 0.15)
    contrast = tf.random.stateless_uniform([b, 1, 1, 1], s[3], 0.8, 1.2)
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value((images - mean) * contrast + mean + bright, -1.0, 1.0)


def _decode(path: tf.Tensor) -> tf.Tensor:
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def make_dataset(
    images: np.ndarray | Sequence[str],
    labels: np.ndarray,
    batch_size: int,
    training: bool = False,
    augment_images: bool = True,
    seed: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    preprocessing: str = "arcface",
    image_size: int | None = None,
) -> tf.data.Dataset:
    """Batches of (float32 images, int64 labels). ``batch_size`` is the GLOBAL batch.

    With ``strategy`` the dataset is returned as is (Keras' ``fit`` distributes it); batching with
    the global size and ``drop_remainder`` keeps the per-replica shapes fixed.
    """
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    if n == 0:
        raise DataError("images: the dataset is empty")
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3 or len(images) != n:
            raise DataError(f"images: expected (N, H, W, 3) matching {n} labels, got {images.shape}")
        ds = tf.data.Dataset.from_tensor_slices((images, labels))
    else:
        paths = [str(p) for p in images]
        if len(paths) != n:
            raise DataError(f"images: {len(paths)} paths for {n} labels")
        if image_size is None:
            raise DataError("image_size: required when images are file paths")
        ds = tf.data.Dataset.from_tensor_slices((paths, labels)).map(
            lambda p, y: (tf.image.resize(_decode(p), [image_size, image_size]), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if training and n < batch_size:
        raise DataError(f"batch_size: {batch_size} is larger than the {n} training images")
    if training:
        ds = ds.shuffle(min(n, 20_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=training)
    ds = ds.map(lambda x, y: (preprocess(x, preprocessing), y), num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment_images:
        counter = tf.data.Dataset.counter()
        ds = tf.data.Dataset.zip((ds, counter)).map(
            lambda xy, i: (augment(xy[0], tf.stack([tf.cast(seed, tf.int64), i])), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def identity_balanced_batches(labels: np.ndarray, p: int, k: int, num_batches: int, seed: int = 0) -> np.ndarray:
    """Index batches of P identities x K images each: (num_batches, p * k) int64.

    Identities with fewer than K images are sampled with replacement.
    """
    labels = np.asarray(labels)
    ids, inverse = np.unique(labels, return_inverse=True)
    if len(ids) < p:
        raise DataError(f"labels: {len(ids)} identities, fewer than P={p} per batch")
    rng = np.random.default_rng(seed)
    members = [np.nonzero(inverse == i)[0] for i in range(len(ids))]
    out = np.empty((num_batches, p * k), np.int64)
    for b in range(num_batches):
        chosen = rng.choice(len(ids), p, replace=False)
        out[b] = np.concatenate([rng.choice(members[c], k, replace=len(members[c]) < k) for c in chosen])
    return out
