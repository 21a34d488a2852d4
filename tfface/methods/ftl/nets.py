"""FTL's networks (paper Sec. 3.2, Fig. 2; layers from the spec's suggestions, the supplement being unavailable).

- :func:`encoder` Enc: 3x3 convs with BatchNorm + ELU (the last one BN, no activation), global average
  pooling -> the rich feature ``g``;
- :func:`decoder` Dec: Dense -> (s, s, c) -> stride-2 transposed convs -> a 3x3 conv, sigmoid (pixels in
  [0, 1]), cropped to the input size; no skip links from Enc (Sec. 4.6: so that g keeps the variance);
- :func:`filtering_network` R: "a linear layer, two deconvolution layers, two convolution layers and
  another linear layer" -> the identity feature ``f``;
- :func:`classifier` FC: ``W`` without bias (Eq. 2 has none; the weight-norm analysis uses only ``w_j``).

BatchNorm (:func:`tfface.nets.normalization.batch_norm`: momentum 0.9, as insightface; Keras' 0.99 leaves
the moving variance far from the data's after the few thousand steps a CPU run takes) is synchronised
across replicas, so a batch split over N devices is normalised by the global batch's statistics.
"""

from __future__ import annotations

import math

import keras

from tfface.nets.normalization import batch_norm

__all__ = ["classifier", "decoder", "encoder", "filtering_network"]


def _bn_elu(x, name):
    x = batch_norm(f"{name}_bn", sync=True)(x)
    return keras.layers.ELU(name=f"{name}_elu")(x)


def encoder(input_shape, layers, feature_dim: int, name: str = "encoder") -> keras.Model:
    """Enc: ``x`` -> ``g`` (``feature_dim``); ``layers``: (filters, stride) per conv, the last one's filters
    replaced by ``feature_dim``."""
    inp = keras.Input(tuple(input_shape), name="image")
    x = inp
    for i, (filters, stride) in enumerate(layers):
        last = i == len(layers) - 1
        x = keras.layers.Conv2D(feature_dim if last else filters, 3, strides=stride, padding="same",
                                use_bias=False, name=f"conv{i}")(x)
        x = batch_norm(f"conv{i}_bn", sync=True)(x) if last else _bn_elu(x, f"conv{i}")
    g = keras.layers.GlobalAveragePooling2D(name="g")(x)
    return keras.Model(inp, g, name=name)


def decoder(input_shape, feature_dim: int, channels, name: str = "decoder") -> keras.Model:
    """Dec: ``g`` -> ``x'`` of ``input_shape``; ``channels[0]`` at the start size, one stride-2 transposed
    conv per further entry."""
    h, w, c = input_shape
    ups = len(channels) - 1
    s = max(1, math.ceil(max(h, w) / 2**ups))
    inp = keras.Input((feature_dim,), name="g")
    x = keras.layers.Dense(s * s * channels[0], name="dense")(inp)
    x = _bn_elu(keras.layers.Reshape((s, s, channels[0]))(x), "dense")
    for i, ch in enumerate(channels[1:]):
        x = keras.layers.Conv2DTranspose(ch, 3, strides=2, padding="same", use_bias=False, name=f"deconv{i}")(x)
        x = _bn_elu(x, f"deconv{i}")
    size = s * 2**ups
    if size != h or size != w:
        top, left = (size - h) // 2, (size - w) // 2
        x = keras.layers.Cropping2D(((top, size - h - top), (left, size - w - left)), name="crop")(x)
    out = keras.layers.Conv2D(c, 3, padding="same", activation="sigmoid", dtype="float32", name="image")(x)
    return keras.Model(inp, out, name=name)


def filtering_network(feature_dim: int, spatial: int, channels, name: str = "filtering") -> keras.Model:
    """R: ``g`` -> ``f``: Dense -> (s, s, c0) -> ConvT c1 s2 -> ConvT c2 s2 -> Conv c3 s2 -> Conv c4 s2 ->
    Flatten -> Dense (linear); BN + ELU after every layer but the last."""
    c0, c1, c2, c3, c4 = channels
    inp = keras.Input((feature_dim,), name="g")
    x = keras.layers.Dense(spatial * spatial * c0, name="dense_in")(inp)
    x = _bn_elu(keras.layers.Reshape((spatial, spatial, c0))(x), "dense_in")
    for i, ch in enumerate((c1, c2)):
        x = _bn_elu(keras.layers.Conv2DTranspose(ch, 3, strides=2, padding="same", use_bias=False,
                                                 name=f"deconv{i}")(x), f"deconv{i}")
    for i, ch in enumerate((c3, c4)):
        x = _bn_elu(keras.layers.Conv2D(ch, 3, strides=2, padding="same", use_bias=False, name=f"conv{i}")(x),
                    f"conv{i}")
    f = keras.layers.Dense(feature_dim, name="f")(keras.layers.Flatten()(x))
    return keras.Model(inp, f, name=name)


def classifier(feature_dim: int, num_classes: int, name: str = "classifier") -> keras.Model:
    """FC: ``f`` -> logits ``W f`` (no bias)."""
    inp = keras.Input((feature_dim,), name="f")
    out = keras.layers.Dense(num_classes, use_bias=False, dtype="float32", name="logits")(inp)
    return keras.Model(inp, out, name=name)
