"""R3AN's networks (Chen et al., "R3 Adversarial Network for Cross Model Face Recognition", Table 1).

- :func:`generator` G: source feature X (256) -> 56x56 face, fractional-strided convolutions (DCGAN-style,
  the paper's [21]); output sizes 512x4x4, 128x7x7, 32x14x14, 8x28x28, 3x56x56.
- :func:`extractor` E: 56x56 face -> target feature (256), MobileNetV2 bottlenecks (the paper's [23]);
  output sizes 32x28x28, 64x14x14, 96x14x14, 160x7x7, 320x7x7, 1280x7x7, 1280, 256.
- :func:`discriminator` D: 56x56 face -> one logit; output sizes 4x28x28 ... 128x1x1, 1.
- :func:`fc_translator`: the naive MLP baseline ("FC", Table 3) with about as many parameters as G+E.

The paper gives only operator types and output sizes; kernels, strides, normalisation and
activations follow the suggestions of the method spec (DCGAN practice for G and D, MobileNetV2's
block for E, expansion factor T=6, one block per layer). G and D convolutions start from DCGAN's
N(0, 0.02) and BN gamma from N(1, 0.02) (spec A12); E and the MLP keep Keras' defaults.

``width`` (default 1.0, the paper's Table 1) scales the channels of G's hidden layers and of E for
the CPU-sized benchmark and demo; the image (56x56x3) and feature (256) sizes never change. Training
lives in :mod:`tfface.methods.r3an`.
"""

from __future__ import annotations

import math

import keras

from tfface.nets.mobilenet_v2 import inverted_residual
from tfface.nets.normalization import batch_norm


def _ch(channels: int, width: float) -> int:
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(4, int(round(channels * width)))


def _dcgan_bn(name: str, seed: int | None) -> keras.layers.BatchNormalization:
    bn = batch_norm(name, epsilon=1e-5)
    bn.gamma_initializer = keras.initializers.RandomNormal(1.0, 0.02, seed=seed)
    return bn


def generator(source_dim: int = 256, width: float = 1.0, seed: int | None = None,
              name: str = "generator") -> keras.Model:
    """G: L2-normalised source feature -> (56, 56, 3) image in [-1, 1] (tanh)."""
    init = lambda k: keras.initializers.RandomNormal(0.0, 0.02, seed=None if seed is None else seed + k)  # noqa: E731
    x_in = keras.Input((source_dim,), name="source_features")
    x = keras.layers.UnitNormalization(axis=-1)(x_in)
    x = keras.layers.Reshape((1, 1, source_dim))(x)
    x = keras.layers.Conv2DTranspose(_ch(512, width), 4, strides=1, padding="valid", use_bias=False,
                                     kernel_initializer=init(1), name="fconv1")(x)
    x = keras.layers.ReLU()(_dcgan_bn("fconv1_bn", seed)(x))
    x = keras.layers.Conv2DTranspose(_ch(128, width), 3, strides=2, padding="valid", use_bias=False,
                                     kernel_initializer=init(2), name="fconv2")(x)
    x = keras.layers.Cropping2D(1, name="fconv2_crop")(x)  # (4-1)*2+3 = 9 -> 7, PyTorch k3 s2 p1
    x = keras.layers.ReLU()(_dcgan_bn("fconv2_bn", seed)(x))
    for i, filters in ((3, 32), (4, 8)):
        x = keras.layers.Conv2DTranspose(_ch(filters, width), 4, strides=2, padding="same", use_bias=False,
                                         kernel_initializer=init(i), name=f"fconv{i}")(x)
        x = keras.layers.ReLU()(_dcgan_bn(f"fconv{i}_bn", seed)(x))
    x = keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same", kernel_initializer=init(5), name="fconv5")(x)
    out = keras.layers.Activation("tanh", dtype="float32", name="face")(x)
    return keras.Model(x_in, out, name=name)


def extractor(target_dim: int = 256, expansion: int = 6, width: float = 1.0,
              name: str = "extractor") -> keras.Model:
    """E: (56, 56, 3) face -> target feature (linear; normalise only at evaluation)."""
    img = keras.Input((56, 56, 3), name="faces")
    x = img
    for i, (filters, stride) in enumerate(((32, 2), (64, 2), (96, 1), (160, 2), (320, 1)), start=1):
        x = inverted_residual(x, _ch(filters, width), stride, 1 if i == 1 else expansion, f"conv{i}")
    x = keras.layers.Conv2D(_ch(1280, width), 1, use_bias=False, name="conv6")(x)
    x = keras.layers.ReLU(max_value=6.0)(batch_norm("conv6_bn")(x))
    x = keras.layers.GlobalAveragePooling2D(name="pooling")(x)
    out = keras.layers.Dense(target_dim, dtype="float32", name="fc")(x)
    return keras.Model(img, out, name=name)


def discriminator(seed: int | None = None, name: str = "discriminator") -> keras.Model:
    """D: (56, 56, 3) face -> real/fake logit (unconditional, Eq. 5)."""
    init = lambda k: keras.initializers.RandomNormal(0.0, 0.02, seed=None if seed is None else seed + 10 + k)  # noqa: E731
    img = keras.Input((56, 56, 3), name="faces")
    x = keras.layers.LeakyReLU(0.2)(keras.layers.Conv2D(4, 4, strides=2, padding="same", kernel_initializer=init(1),
                                                        name="conv1")(img))
    for i, filters in enumerate((8, 16, 32, 64, 128), start=2):
        x = keras.layers.Conv2D(filters, 4, strides=2, padding="same", use_bias=False, kernel_initializer=init(i),
                                name=f"conv{i}")(x)
        x = keras.layers.LeakyReLU(0.2)(_dcgan_bn(f"conv{i}_bn", seed)(x))
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


def matched_hidden(parameters: int, source_dim: int = 256, target_dim: int = 256) -> int:
    """The hidden width H of :func:`fc_translator` whose trainable parameters are closest to ``parameters``.

    Trainable parameters of the MLP: ``Ds*H + 2H`` (fc1 + BN) ``+ H*H + 2H`` (fc2 + BN) ``+ H*Dt + Dt``,
    so H solves ``H^2 + (Ds + Dt + 4) H + Dt - P = 0``.
    """
    b = source_dim + target_dim + 4
    return max(1, int(round((-b + math.sqrt(b * b + 4 * (parameters - target_dim))) / 2)))


def trainable_parameters(*models: keras.Model) -> int:
    return int(sum(int(math.prod(w.shape)) for m in models for w in m.trainable_weights))
