"""R3AN's networks (Chen et al., "R3 Adversarial Network for Cross Model Face Recognition", Table 1).

- :func:`generator` G: source feature X (256) -> 56x56 face, fractional-strided convolutions (DCGAN-style,
  the paper's [21]); output sizes 512x4x4, 128x7x7, 32x14x14, 8x28x28, 3x56x56.
- :func:`extractor` E: 56x56 face -> target feature (256), MobileNetV2 bottlenecks (the paper's [23]);
  output sizes 32x28x28, 64x14x14, 96x14x14, 160x7x7, 320x7x7, 1280x7x7, 1280, 256.
- :func:`discriminator` D: 56x56 face -> one logit; output sizes 4x28x28 ... 128x1x1, 1.
- :func:`fc_translator`: the naive MLP baseline ("FC", Table 3) with about as many parameters as G+E.

The paper gives only operator types and output sizes; kernels, strides, normalisation and
activations follow the suggestions of the method spec (DCGAN practice for G and D, MobileNetV2's
block for E, expansion factor T=6, one block per layer). Not yet wired to a training method: that is
``tfface.methods.r3an`` (issue 3).
"""

from __future__ import annotations

import keras

from tfface.nets.mobilenet_v2 import inverted_residual
from tfface.nets.normalization import batch_norm


def generator(source_dim: int = 256, name: str = "generator") -> keras.Model:
    """G: L2-normalised source feature -> (56, 56, 3) image in [-1, 1] (tanh)."""
    x_in = keras.Input((source_dim,), name="source_features")
    x = keras.layers.UnitNormalization(axis=-1)(x_in)
    x = keras.layers.Reshape((1, 1, source_dim))(x)
    x = keras.layers.Conv2DTranspose(512, 4, strides=1, padding="valid", use_bias=False, name="fconv1")(x)
    x = keras.layers.ReLU()(batch_norm("fconv1_bn", epsilon=1e-5)(x))
    x = keras.layers.Conv2DTranspose(128, 3, strides=2, padding="valid", use_bias=False, name="fconv2")(x)
    x = keras.layers.Cropping2D(1)(x)  # (4-1)*2+3 = 9 -> 7, PyTorch's k3 s2 p1
    x = keras.layers.ReLU()(batch_norm("fconv2_bn", epsilon=1e-5)(x))
    for i, filters in ((3, 32), (4, 8)):
        x = keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False, name=f"fconv{i}")(x)
        x = keras.layers.ReLU()(batch_norm(f"fconv{i}_bn", epsilon=1e-5)(x))
    x = keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same", name="fconv5")(x)
    out = keras.layers.Activation("tanh", dtype="float32", name="face")(x)
    return keras.Model(x_in, out, name=name)


def extractor(target_dim: int = 256, expansion: int = 6, name: str = "extractor") -> keras.Model:
    """E: (56, 56, 3) face -> target feature (linear; normalise only at evaluation)."""
    img = keras.Input((56, 56, 3), name="faces")
    x = img
    for i, (filters, stride) in enumerate(((32, 2), (64, 2), (96, 1), (160, 2), (320, 1)), start=1):
        x = inverted_residual(x, filters, stride, 1 if i == 1 else expansion, f"conv{i}")
    x = keras.layers.Conv2D(1280, 1, use_bias=False, name="conv6")(x)
    x = keras.layers.ReLU(max_value=6.0)(batch_norm("conv6_bn")(x))
    x = keras.layers.GlobalAveragePooling2D(name="pooling")(x)
    out = keras.layers.Dense(target_dim, dtype="float32", name="fc")(x)
    return keras.Model(img, out, name=name)


def discriminator(name: str = "discriminator") -> keras.Model:
    """D: (56, 56, 3) face -> real/fake logit (unconditional, Eq. 5)."""
    img = keras.Input((56, 56, 3), name="faces")
    x = keras.layers.LeakyReLU(0.2)(keras.layers.Conv2D(4, 4, strides=2, padding="same", name="conv1")(img))
    for i, filters in enumerate((8, 16, 32, 64, 128), start=2):
        x = keras.layers.Conv2D(filters, 4, strides=2, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.LeakyReLU(0.2)(batch_norm(f"conv{i}_bn")(x))
    out = keras.layers.Dense(1, dtype="float32", name="fc")(keras.layers.Flatten()(x))
    return keras.Model(img, out, name=name)


def fc_translator(source_dim: int = 256, target_dim: int = 256, hidden: int = 1811, name: str = "fc_translator"):
    """The naive MLP baseline: source -> H -> H -> target with BN + ReLU (H=1811 matches G+E's parameters)."""
    x_in = keras.Input((source_dim,), name="source_features")
    x = keras.layers.UnitNormalization(axis=-1)(x_in)
    for i in (1, 2):
        x = keras.layers.Dense(hidden, use_bias=False, name=f"fc{i}")(x)
        x = keras.layers.ReLU()(batch_norm(f"fc{i}_bn")(x))
    out = keras.layers.Dense(target_dim, dtype="float32", name="target_features")(x)
    return keras.Model(x_in, out, name=name)
