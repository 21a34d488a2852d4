"""WSGAN's input pipeline: each element is one outer iteration of the alternating schedule.

:func:`alternating_batches` draws ``n_critic`` strong batches (one per D-phase) and ``n_critic + 1``
weak batches (one per D-phase, the last for the G-phase), both drawn with replacement (the weak set is
much smaller, spec A6), with one z per weak sample. Every draw comes from a stateless generator seeded
by (seed, stream, element position), so a run is reproducible and the same on 1 or N replicas (a
shuffle buffer's order is not, once a strategy rebuilds the pipeline).
"""

from __future__ import annotations

import numpy as np

from tfface.errors import ConfigError, DataError

__all__ = ["alternating_batches", "check_labels"]


def check_labels(strong_labels: np.ndarray, weak_labels: np.ndarray) -> int:
    """The number of classes of W_C; DataError when a weak training label has no strong samples (spec A22:
    the G-phase's classification loss needs every weak identity among the strong classes)."""
    strong_labels, weak_labels = np.asarray(strong_labels), np.asarray(weak_labels)
    missing = np.setdiff1d(np.unique(weak_labels), np.unique(strong_labels))
    if len(missing):
        raise DataError(f"weak_labels: {len(missing)} weak training identities have no strong samples "
                        f"(first: {int(missing[0])}); W_C is trained on the strong classes")
    if strong_labels.min() < 0:
        raise DataError("strong_labels: must be >= 0")
    return int(strong_labels.max()) + 1


def alternating_batches(strong, strong_labels, weak, weak_labels, n_critic: int, z_dim: int,
                        strong_batch_size: int = 256, weak_batch_size: int = 256, seed: int = 0):
    """An endless ``tf.data.Dataset`` of dicts (``strong`` [B_s, n_critic, ...], ``strong_labels``,
    ``weak`` [B_w, n_critic + 1, ...], ``weak_labels``, ``z`` [B_w, n_critic + 1, z_dim]); batch sizes
    are GLOBAL (a strategy splits them)."""
    import tensorflow as tf

    strong, weak = np.asarray(strong, np.float32), np.asarray(weak, np.float32)
    if len(strong) != len(strong_labels) or len(weak) != len(weak_labels):
        raise DataError(f"strong: {len(strong)} rows and {len(strong_labels)} labels; weak: {len(weak)} rows and "
                        f"{len(weak_labels)} labels")
    if not np.isfinite(strong).all() or not np.isfinite(weak).all():
        raise DataError("strong / weak inputs contain NaN or Inf")
    if n_critic < 1 or z_dim < 1 or strong_batch_size < 1 or weak_batch_size < 1:
        raise ConfigError("n_critic, z_dim and the batch sizes must be >= 1")
    check_labels(strong_labels, weak_labels)

    def draws(x, y, rows, stream):
        """Element i: ``rows`` samples drawn with replacement by a stateless generator seeded (seed, stream, i)."""
        x, y = tf.constant(x), tf.constant(np.asarray(y, np.int64))
        n = int(x.shape[0])

        def pick(i):
            key = tf.stack([tf.constant(seed, tf.int64) * 3 + stream, i])
            idx = tf.random.stateless_uniform([rows], seed=key, maxval=n, dtype=tf.int64)
            z = tf.random.stateless_normal([rows, z_dim], seed=key + tf.constant([0, 1 << 40], tf.int64))
            return tf.gather(x, idx), tf.gather(y, idx), z

        return tf.data.Dataset.range(1 << 40).map(pick)

    s = draws(strong, strong_labels, n_critic, 0).batch(strong_batch_size, drop_remainder=True)
    w = draws(weak, weak_labels, n_critic + 1, 1).batch(weak_batch_size, drop_remainder=True)
    ds = tf.data.Dataset.zip(s, w).map(
        lambda sx, wx: {"strong": sx[0], "strong_labels": sx[1], "weak": wx[0], "weak_labels": wx[1], "z": wx[2]})
    return ds.prefetch(tf.data.AUTOTUNE)
