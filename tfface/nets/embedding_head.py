"""The embedding head: feature map -> D-dimensional face embedding (insightface's "E" and "GDC" outputs)."""

from __future__ import annotations

import keras
from keras import ops

from tfface.errors import ConfigError
from tfface.nets.normalization import batch_norm

KINDS = ("flatten", "gdc")


@keras.saving.register_keras_serializable(package="tfface")
class EmbeddingHead(keras.layers.Layer):
    """Feature map ``[B, H, W, C]`` -> embedding ``[B, D]`` (float32).

    - ``kind="flatten"`` (insightface's output "E", arcface_torch ``iresnet``): BN -> Dropout ->
      Flatten -> Dense(D) -> BN ("features", no learned scale).
    - ``kind="gdc"`` (MobileFaceNet's global depthwise convolution, Chen et al. 2018 Sec. 3.2):
      DepthwiseConv(HxW, valid) -> BN -> Dropout -> Flatten -> Dense(D, no bias) -> BN.

    The Dense and the last BN run in float32 even under a mixed-precision policy (as arcface_torch
    runs ``fc`` and ``features`` outside autocast), so the embedding is float32.

    Example:
      >>> import numpy as np
      >>> head = EmbeddingHead(128)
      >>> tuple(head(np.zeros((2, 4, 4, 64), "float32")).shape)
      (2, 128)

    Args:
      embedding_dim: D.
      kind: ``flatten`` or ``gdc``.
      dropout: dropout rate before the Dense (insightface uses 0 on large data sets).
      sync_batchnorm: cross-replica BN statistics (the builders in :mod:`tfface.methods` turn them on
        when the strategy has more than one replica; nets never look at the strategy).
      seed: seed of the dropout's ``keras.random.SeedGenerator``.
    """

    def __init__(self, embedding_dim: int = 128, kind: str = "flatten", dropout: float = 0.0,
                 sync_batchnorm: bool = False, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ConfigError(f"kind: {kind!r} is not one of {list(KINDS)}")
        if int(embedding_dim) < 1:
            raise ConfigError(f"embedding_dim: must be >= 1, got {embedding_dim}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"dropout: must be in [0, 1), got {dropout}")
        self.embedding_dim = int(embedding_dim)
        self.kind = kind
        self.dropout = float(dropout)
        self.sync_batchnorm = bool(sync_batchnorm)
        self.seed = seed
        self.bn_in = batch_norm("bn_in", self.sync_batchnorm)
        self.drop = keras.layers.Dropout(self.dropout, seed=seed, name="dropout")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.dense = keras.layers.Dense(self.embedding_dim, use_bias=kind == "flatten", dtype="float32",
                                        name="dense")
        self.bn_out = keras.layers.BatchNormalization(momentum=0.9, epsilon=2e-5, scale=False,
                                                      synchronized=self.sync_batchnorm, dtype="float32",
                                                      name="bn_out")
        self.gdc = None

    def build(self, input_shape):
        # build() creates the state of every child layer: Keras 3 loads weights into built layers.
        if len(input_shape) != 4 or None in tuple(input_shape[1:]):
            raise ConfigError(f"EmbeddingHead needs a [B, H, W, C] feature map with static H, W, C; "
                              f"got {tuple(input_shape)}")
        h, w, c = (int(d) for d in input_shape[1:])
        if self.kind == "gdc":  # the depthwise kernel covers the whole feature map
            self.gdc = keras.layers.DepthwiseConv2D((h, w), padding="valid", use_bias=False, name="gdc")
            self.gdc.build(input_shape)
            self.bn_in.build((input_shape[0], 1, 1, c))
            flat = c
        else:
            self.bn_in.build(input_shape)
            flat = h * w * c
        self.dense.build((input_shape[0], flat))
        self.bn_out.build((input_shape[0], self.embedding_dim))

    def call(self, x, training=False):
        if self.gdc is not None:
            x = self.gdc(x)
        x = self.bn_in(x, training=training)
        x = self.drop(x, training=training)
        x = self.dense(ops.cast(self.flatten(x), "float32"))
        return self.bn_out(x, training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.embedding_dim)

    def compute_output_spec(self, x, training=False):
        return keras.KerasTensor((x.shape[0], self.embedding_dim), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "embedding_dim": self.embedding_dim, "kind": self.kind,
                "dropout": self.dropout, "sync_batchnorm": self.sync_batchnorm, "seed": self.seed}
