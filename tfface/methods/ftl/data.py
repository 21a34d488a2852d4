"""FTL's input pipelines (spec 3.7): which samples each phase's batches hold.

Every batch is drawn from index arrays made in NumPy from a seeded generator, then gathered from the
images on the fly (``tf.data``), so a run is reproducible and the same on 1 or N replicas (batch sizes
are GLOBAL; a strategy splits them):

- :func:`joint_batches`: pretraining, Stage 2 and the baselines: ``"instance"`` sampling (uniform over
  images, a fresh permutation per pass) or ``"class_balanced"`` (a class uniformly, then one of its
  images: the re-sampling baseline);
- :func:`stage1_batches`: Stage 1's dict batches: ``x_r, y_r`` uniformly from the hard list h (with
  replacement), ``x_u, y_u`` class-balanced over the UR classes, and ``eps`` ~ N(0, I) for the Gaussian
  transfer.
"""

from __future__ import annotations

import numpy as np

from tfface.errors import ConfigError, DataError

__all__ = ["SAMPLINGS", "joint_batches", "sample_indices", "stage1_batches"]

SAMPLINGS = ("instance", "class_balanced")


def sample_indices(labels, count: int, sampling: str, rng: np.random.Generator, classes=None) -> np.ndarray:
    """``count`` row indices: ``instance`` (permutations of all rows, concatenated) or ``class_balanced``
    (a class of ``classes`` (default: all) uniformly, then a row of it uniformly)."""
    labels = np.asarray(labels)
    if sampling == "instance":
        reps = -(-count // len(labels))
        return np.concatenate([rng.permutation(len(labels)) for _ in range(reps)])[:count]
    if sampling != "class_balanced":
        raise ConfigError(f"sampling: {sampling!r} is not one of {SAMPLINGS}")
    classes = np.unique(labels) if classes is None else np.asarray(classes)
    order = np.argsort(labels, kind="stable")
    start = np.searchsorted(labels[order], classes)
    size = np.searchsorted(labels[order], classes, side="right") - start
    if (size == 0).any():
        raise DataError(f"class_balanced sampling: class {int(classes[np.argmax(size == 0)])} has no images")
    pick = rng.integers(0, len(classes), count)
    return order[start[pick] + (rng.random(count) * size[pick]).astype(np.int64)]


def _gather(x, y, index_sets: dict, batch_size: int):
    import tensorflow as tf

    x, y = tf.constant(np.asarray(x, np.float32)), tf.constant(np.asarray(y, np.int64))
    ds = tf.data.Dataset.from_tensor_slices({k: np.asarray(v, np.int64) for k, v in index_sets.items()})
    return ds.batch(batch_size, drop_remainder=True), x, y


def joint_batches(x, y, steps: int, batch_size: int, sampling: str = "instance", seed: int = 0):
    """``steps`` batches ``(images, labels)``."""
    if steps < 1 or batch_size < 1:
        raise ConfigError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    if len(x) != len(y):
        raise DataError(f"images: {len(x)} rows but {len(y)} labels")
    idx = sample_indices(y, steps * batch_size, sampling, np.random.default_rng(seed))
    ds, xt, yt = _gather(x, y, {"i": idx}, batch_size)
    import tensorflow as tf

    return ds.map(lambda d: (tf.gather(xt, d["i"]), tf.gather(yt, d["i"]))).prefetch(tf.data.AUTOTUNE)


def stage1_batches(x, y, hard, ur_classes, steps: int, batch_size: int, feature_dim: int, seed: int = 0):
    """``steps`` Stage-1 dict batches (module docstring)."""
    import tensorflow as tf

    hard, ur_classes = np.asarray(hard, np.int64), np.asarray(ur_classes)
    if not len(hard):
        raise DataError("stage 1: the hard list h is empty (no regular sample is farther than its class's mean "
                        "distance), so there is no regular batch to draw")
    if not len(ur_classes):
        raise DataError("stage 1: no under-represented classes (data.num_ur = 0): nothing to transfer to")
    rng = np.random.default_rng(seed)
    n = steps * batch_size
    y = np.asarray(y)
    ur_rows = np.flatnonzero(np.isin(y, ur_classes))
    idx_u = ur_rows[sample_indices(y[ur_rows], n, "class_balanced", rng, ur_classes)]
    idx_r = hard[rng.integers(0, len(hard), n)]
    eps = rng.standard_normal((n, feature_dim)).astype(np.float32)
    ds, xt, yt = _gather(x, y, {"r": idx_r, "u": idx_u}, batch_size)
    epst = tf.data.Dataset.from_tensor_slices(eps).batch(batch_size, drop_remainder=True)
    ds = tf.data.Dataset.zip(ds, epst).map(
        lambda d, e: {"x_r": tf.gather(xt, d["r"]), "y_r": tf.gather(yt, d["r"]), "x_u": tf.gather(xt, d["u"]),
                      "y_u": tf.gather(yt, d["u"]), "eps": e})
    return ds.prefetch(tf.data.AUTOTUNE)
