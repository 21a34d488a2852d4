"""FTL's losses (paper Sec. 3.2), per example, so a method model averages them over the global batch.

- :func:`softmax_loss`, Eq. 2: ``-log(exp(w_y^T f) / sum_j exp(w_j^T f))``;
- :func:`metric_l2`, Eq. 3 ("m-L2"): the squared norm of FC's output, ``||W f||^2 = sum_j (w_j^T f)^2``
  (the printed ``W^T f`` does not type-check; the words say "the norm of the output of FC"), summed over
  the classes (``"sum"``, the literal form) or averaged (``"mean"``);
- :func:`reconstruction_loss`, Eq. 1: ``||x' - x||^2`` summed (or averaged) over the pixels.

Example:
  >>> import numpy as np
  >>> from tfface.methods.ftl.losses import metric_l2
  >>> metric_l2(np.array([[1.0, 2.0], [0.0, 3.0]], np.float32)).numpy().tolist()
  [5.0, 9.0]
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["metric_l2", "reconstruction_loss", "softmax_loss"]


def softmax_loss(labels, logits) -> tf.Tensor:
    """Eq. 2 per example."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), tf.cast(logits, tf.float32))


def metric_l2(logits, reduction: str = "sum") -> tf.Tensor:
    """Eq. 3 per example: ``sum_j logit_j^2`` (or the mean over classes)."""
    sq = tf.square(tf.cast(logits, tf.float32))
    return tf.reduce_sum(sq, -1) if reduction == "sum" else tf.reduce_mean(sq, -1)


def reconstruction_loss(x, x_rec, reduction: str = "sum") -> tf.Tensor:
    """Eq. 1 per example: the squared error summed (or averaged) over pixels and channels."""
    d = tf.square(tf.cast(x_rec, tf.float32) - tf.cast(x, tf.float32))
    d = tf.reshape(d, [tf.shape(d)[0], -1])
    return tf.reduce_sum(d, -1) if reduction == "sum" else tf.reduce_mean(d, -1)
