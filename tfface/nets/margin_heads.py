"""Margin-softmax classification heads for training face embeddings.

The combined margin (insightface / arcface_torch ``CombinedMarginLoss``) gives the target-class logit
``s * (cos(m1 * theta + m2) - m3)`` and every other logit ``s * cos(theta)``, where ``theta`` is the
angle between the L2-normalised embedding and the L2-normalised class centre (a column of W [D, C]):

=====================  ===========  ===========  ==========  ==========================================
head                    m1           m2           m3          reference
=====================  ===========  ===========  ==========  ==========================================
``NormSoftmax``         1            0            0           NormFace (Wang et al., ACM MM 2017)
``SphereFace``          m (1.35)     0            0           SphereFace (Liu et al., CVPR 2017, Eq. 6)
``CosFace``             1            0            m (0.35)    CosFace (Wang et al., CVPR 2018, Eq. 4)
``ArcFace``             1            m (0.5)      0           ArcFace (Deng et al., CVPR 2019, Eq. 3)
``CombinedMarginHead``  m1           m2           m3          ArcFace Eq. 4 (e.g. 1, 0.3, 0.2)
=====================  ===========  ===========  ==========  ==========================================

Where ``theta + m2`` passes pi, ``cos(theta + m2)`` would grow again. For ``m1 == 1`` and ``m2 > 0``
the head follows arcface_torch exactly: with ``th = cos(pi - m2)`` and ``mm = sin(pi - m2) * m2`` the
target is ``cos(theta + m2)`` when ``cos(theta) > th`` and ``cos(theta) - mm`` otherwise (or, with
``easy_margin=True``, ``cos(theta + m2)`` only where ``cos(theta) > 0``). For ``m1 != 1`` (SphereFace
and combined margins) the angle ``phi = m1 * theta + m2`` goes through SphereFace's monotone
extension ``psi(phi) = (-1)^k cos(phi) - 2k``, ``k = floor(phi / pi)`` (SphereFace Eq. 6).

Every head is called as ``head(embeddings, labels)`` and returns float32 logits ``[B, C]`` (the layer's
dtype policy is float32, so they stay float32 under mixed precision); ``head(embeddings)`` without
labels returns the margin-free logits (``s * cos(theta)``).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from tfface.errors import ConfigError

_EPS = 1e-7  # keeps arccos and sqrt(1 - cos^2) differentiable at cos = +-1


@keras.saving.register_keras_serializable(package="tfface")
class CombinedMarginHead(keras.layers.Layer):
    """Class centres W [D, C] and the combined-margin logits ``s * (cos(m1*theta + m2) - m3)`` (target).

    Example:
      >>> import numpy as np
      >>> head = CombinedMarginHead(num_classes=10, s=32.0, m1=1.0, m2=0.3, m3=0.2)
      >>> tuple(head(np.ones((2, 8), "float32"), np.array([1, 2])).shape)
      (2, 10)

    Args:
      num_classes: C, the number of training identities.
      s: the scale (radius of the hypersphere), ``s`` in ArcFace Eq. 3.
      m1: multiplicative angular margin (SphereFace); ``m2``: additive angular margin (ArcFace);
      m3: additive cosine margin (CosFace).
      easy_margin: arcface_torch's ``easy_margin`` (apply the ArcFace margin only where cos > 0).
      kernel_initializer: initialiser of W (arcface_torch: normal, std 0.01).
    """

    def __init__(self, num_classes: int, s: float = 64.0, m1: float = 1.0, m2: float = 0.5, m3: float = 0.0,
                 easy_margin: bool = False, kernel_initializer="random_normal", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if int(num_classes) < 2:
            raise ConfigError(f"num_classes: must be >= 2, got {num_classes}")
        if s <= 0 or m1 <= 0 or m2 < 0 or m3 < 0 or m2 >= math.pi:
            raise ConfigError(f"margins: need s > 0, m1 > 0, 0 <= m2 < pi, m3 >= 0; got s={s}, m1={m1}, "
                              f"m2={m2}, m3={m3}")
        self.num_classes = int(num_classes)
        self.s, self.m1, self.m2, self.m3 = float(s), float(m1), float(m2), float(m3)
        self.easy_margin = bool(easy_margin)
        if kernel_initializer == "random_normal":
            kernel_initializer = keras.initializers.RandomNormal(stddev=0.01)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, embeddings_shape, labels_shape=None):
        self.kernel = self.add_weight(name="centres", shape=(int(embeddings_shape[-1]), self.num_classes),
                                      initializer=self.kernel_initializer, dtype="float32")

    def cosine(self, embeddings):
        """``cos(theta)`` ``[B, C]`` between normalised embeddings and normalised class centres."""
        x = ops.normalize(ops.cast(embeddings, "float32"), axis=-1)
        w = ops.normalize(ops.convert_to_tensor(self.kernel), axis=0)
        return ops.clip(ops.matmul(x, w), -1.0 + _EPS, 1.0 - _EPS)

    def target_cosine(self, cos_t):
        """The margin-modified target cosine ``cos(m1*theta + m2) - m3`` (before the scale ``s``)."""
        m1, m2, m3 = self.m1, self.m2, self.m3
        if m1 == 1.0 and m2 == 0.0:  # CosFace / NormSoftmax: no angle needed
            return cos_t - m3
        if m1 == 1.0:  # ArcFace (+ optional m3), arcface_torch's th / mm fallback
            sin_t = ops.sqrt(ops.maximum(1.0 - ops.square(cos_t), _EPS))
            phi = cos_t * math.cos(m2) - sin_t * math.sin(m2)
            if self.easy_margin:
                phi = ops.where(cos_t > 0.0, phi, cos_t)
            else:
                th, mm = math.cos(math.pi - m2), math.sin(math.pi - m2) * m2
                phi = ops.where(cos_t > th, phi, cos_t - mm)
            return phi - m3
        # SphereFace-style multiplicative margin (any m2, m3): psi(phi) = (-1)^k cos(phi) - 2k.
        angle = m1 * ops.arccos(cos_t) + m2
        k = ops.floor(angle / math.pi)
        sign = 1.0 - 2.0 * ops.mod(k, 2.0)
        return sign * ops.cos(angle) - 2.0 * k - m3

    def call(self, embeddings, labels=None):
        cos = self.cosine(embeddings)
        if labels is None:
            return self.s * cos
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        onehot = ops.one_hot(labels, self.num_classes, dtype="float32")
        cos_t = ops.sum(cos * onehot, axis=-1)
        delta = self.target_cosine(cos_t) - cos_t
        return self.s * (cos + onehot * ops.expand_dims(delta, -1))

    def compute_output_shape(self, embeddings_shape, labels_shape=None):
        return (embeddings_shape[0], self.num_classes)

    def _head_config(self) -> dict:
        return {"num_classes": self.num_classes, "s": self.s, "m1": self.m1, "m2": self.m2, "m3": self.m3,
                "easy_margin": self.easy_margin}

    def get_config(self):
        return {**keras.layers.Layer.get_config(self), **self._head_config(),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.saving.register_keras_serializable(package="tfface")
class ArcFace(CombinedMarginHead):
    """Additive angular margin: target logit ``s * cos(theta + m)`` (ArcFace, Deng et al. CVPR 2019, Eq. 3).

    Example:
      >>> import numpy as np
      >>> head = ArcFace(num_classes=10, s=64.0, m=0.5)
      >>> tuple(head(np.ones((2, 8), "float32"), np.array([1, 2])).shape)
      (2, 10)
    """

    def __init__(self, num_classes: int, s: float = 64.0, m: float = 0.5, easy_margin: bool = False, **kwargs):
        super().__init__(num_classes, s=s, m1=1.0, m2=m, m3=0.0, easy_margin=easy_margin, **kwargs)
        self.m = float(m)

    def _head_config(self) -> dict:
        return {"num_classes": self.num_classes, "s": self.s, "m": self.m, "easy_margin": self.easy_margin}


@keras.saving.register_keras_serializable(package="tfface")
class CosFace(CombinedMarginHead):
    """Large-margin cosine: target logit ``s * (cos(theta) - m)`` (CosFace, Wang et al. CVPR 2018, Eq. 4)."""

    def __init__(self, num_classes: int, s: float = 64.0, m: float = 0.35, **kwargs):
        super().__init__(num_classes, s=s, m1=1.0, m2=0.0, m3=m, **kwargs)
        self.m = float(m)

    def _head_config(self) -> dict:
        return {"num_classes": self.num_classes, "s": self.s, "m": self.m}


@keras.saving.register_keras_serializable(package="tfface")
class SphereFace(CombinedMarginHead):
    """Multiplicative angular margin on normalised features: ``s * psi(m * theta)`` (SphereFace, Liu et al.
    CVPR 2017, Eq. 6; ``m = 1.35`` as in the ArcFace paper's comparison, Table 2)."""

    def __init__(self, num_classes: int, s: float = 64.0, m: float = 1.35, **kwargs):
        super().__init__(num_classes, s=s, m1=m, m2=0.0, m3=0.0, **kwargs)
        self.m = float(m)

    def _head_config(self) -> dict:
        return {"num_classes": self.num_classes, "s": self.s, "m": self.m}


@keras.saving.register_keras_serializable(package="tfface")
class NormSoftmax(CombinedMarginHead):
    """Normalised softmax, no margin: ``s * cos(theta)`` for every class (NormFace, Wang et al. 2017)."""

    def __init__(self, num_classes: int, s: float = 30.0, **kwargs):
        super().__init__(num_classes, s=s, m1=1.0, m2=0.0, m3=0.0, **kwargs)

    def _head_config(self) -> dict:
        return {"num_classes": self.num_classes, "s": self.s}


@keras.saving.register_keras_serializable(package="tfface")
class SoftmaxHead(keras.layers.Layer):
    """The plain softmax baseline: a Dense classifier ``logits = x W + b`` (labels are ignored)."""

    def __init__(self, num_classes: int, use_bias: bool = True, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if int(num_classes) < 2:
            raise ConfigError(f"num_classes: must be >= 2, got {num_classes}")
        self.num_classes = int(num_classes)
        self.use_bias = bool(use_bias)
        self.dense = keras.layers.Dense(self.num_classes, use_bias=self.use_bias, dtype="float32", name="logits")

    def build(self, embeddings_shape, labels_shape=None):
        self.dense.build(embeddings_shape)

    def call(self, embeddings, labels=None):
        return self.dense(ops.cast(embeddings, "float32"))

    def compute_output_shape(self, embeddings_shape, labels_shape=None):
        return (embeddings_shape[0], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "use_bias": self.use_bias}


MARGIN_HEADS = {
    "arcface": ArcFace,
    "cosface": CosFace,
    "sphereface": SphereFace,
    "combined": CombinedMarginHead,
    "normsoftmax": NormSoftmax,
    "softmax": SoftmaxHead,
}


def get_margin_head(name: str, num_classes: int, /, **kwargs) -> keras.layers.Layer:
    """A margin head by name: ``arcface`` (s, m), ``cosface`` (s, m), ``sphereface`` (s, m), ``combined``
    (s, m1, m2, m3), ``normsoftmax`` (s), ``softmax``; ``kwargs`` go to its constructor."""
    if name not in MARGIN_HEADS:
        raise ConfigError(f"margin: unknown head {name!r}; known: {sorted(MARGIN_HEADS)}")
    try:
        return MARGIN_HEADS[name](num_classes, **kwargs)
    except TypeError as e:
        raise ConfigError(f"margin_kwargs for {name!r}: {e}") from e
