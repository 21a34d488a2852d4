"""MobileNetV2-style backbone for faces (Sandler et al., CVPR 2018), with MobileFaceNet-like strides.

The building block is the inverted-residual bottleneck (MobileNetV2 Table 1 / Fig. 3b): a 1x1
expansion by the factor T (``expansion``) -> BN -> ReLU6, a 3x3 depthwise convolution (stride s)
-> BN -> ReLU6, and a *linear* 1x1 projection -> BN, with a residual connection when the stride is
1 and the channels match. :func:`inverted_residual` is public: R3AN's Extractor (a stack of
MobileNetV2 bottlenecks with expansion T) reuses it.

MobileFaceNet (Chen et al., CCBR 2018) uses the same bottleneck with PReLU instead of ReLU6
(``activation="prelu"``) and a smaller total stride, so a 112 px face keeps a 7x7 map.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfface.errors import ConfigError
from tfface.nets.normalization import batch_norm

# (channels, repeats, first stride[, expansion]) per stage. The first row uses T=1, as in MobileNetV2
# Table 2; rows without a 4th value use the builder's ``expansion``. With the stride-2 stem the total
# stride is 16: 112 px -> 7x7, 64 px -> 4x4, 56 px -> 4x4 (ceil), 32 px -> 2x2.
FACE_BLOCKS: tuple[tuple[int, ...], ...] = (
    (16, 1, 1, 1),
    (24, 2, 2),
    (32, 3, 2),
    (64, 4, 2),
    (96, 3, 1),
    (160, 2, 1),
)

# The ImageNet table of MobileNetV2 Table 2 (total stride 32 with the stem).
IMAGENET_BLOCKS: tuple[tuple[int, ...], ...] = (
    (16, 1, 1, 1),
    (24, 2, 2),
    (32, 3, 2),
    (64, 4, 2),
    (96, 3, 1),
    (160, 3, 2),
    (320, 1, 1),
)

ACTIVATIONS = ("relu6", "prelu", "relu", "swish")


def activation_layer(activation: str, name: str) -> keras.layers.Layer:
    """ReLU6 (MobileNetV2), per-channel PReLU (MobileFaceNet, iResNet) or a named Keras activation."""
    if activation == "prelu":
        return keras.layers.PReLU(shared_axes=[1, 2], name=name)
    if activation == "relu6":
        return keras.layers.ReLU(max_value=6.0, name=name)
    if activation not in ACTIVATIONS:
        raise ConfigError(f"activation: unknown {activation!r}; known: {list(ACTIVATIONS)}")
    return keras.layers.Activation(activation, name=name)


def make_divisible(channels: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of ``divisor``, never below 90% of it (MobileNet)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return rounded


def inverted_residual(x, filters: int, stride: int, expansion: int, name: str, activation: str = "relu6",
                      sync_batchnorm: bool = False):
    """One inverted-residual bottleneck (MobileNetV2 Table 1): expand 1x1 -> depthwise 3x3 -> project 1x1.

    Args:
      x: a symbolic NHWC feature map.
      filters: output channels of the linear projection.
      stride: stride of the depthwise convolution (1 or 2).
      expansion: the expansion factor T (``1`` skips the expansion convolution).
      name: prefix of the layer names (unique within the model).
      activation: ``relu6`` (MobileNetV2) or ``prelu`` (MobileFaceNet).
      sync_batchnorm: cross-replica batch statistics (see :func:`tfface.nets.normalization.batch_norm`).

    Returns:
      The block's output; ``x + F(x)`` when ``stride == 1`` and the channels match.
    """
    in_ch = int(x.shape[-1])
    h = x
    if expansion != 1:
        h = keras.layers.Conv2D(in_ch * int(expansion), 1, use_bias=False, name=f"{name}_expand")(h)
        h = batch_norm(f"{name}_expand_bn", sync_batchnorm)(h)
        h = activation_layer(activation, f"{name}_expand_act")(h)
    h = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(h)
    h = batch_norm(f"{name}_dw_bn", sync_batchnorm)(h)
    h = activation_layer(activation, f"{name}_dw_act")(h)
    h = keras.layers.Conv2D(int(filters), 1, use_bias=False, name=f"{name}_project")(h)
    h = batch_norm(f"{name}_project_bn", sync_batchnorm)(h)  # linear bottleneck: no activation
    if stride == 1 and in_ch == int(filters):
        h = keras.layers.Add(name=f"{name}_add")([x, h])
    return h


def mobilenet_v2(
    input_shape: Sequence[int] = (112, 112, 3),
    width: float = 1.0,
    expansion: int = 6,
    blocks: Sequence[Sequence[int]] = FACE_BLOCKS,
    stem_channels: int = 32,
    stem_stride: int = 2,
    last_channels: int | None = 512,
    activation: str = "relu6",
    sync_batchnorm: bool = False,
    name: str = "mobilenet_v2",
) -> keras.Model:
    """A MobileNetV2-style feature extractor: images -> feature map ``(H/16, W/16, last_channels)``.

    Example:
      >>> net = mobilenet_v2((32, 32, 3), width=0.25, last_channels=64)
      >>> net.output_shape
      (None, 2, 2, 64)

    Args:
      input_shape: ``(H, W, C)`` of the (preprocessed, float) input; the input is named ``images``.
      width: channel multiplier (the paper's alpha); channels are rounded to multiples of 8.
      expansion: the expansion factor T of every bottleneck whose stage row has no 4th value.
      blocks: stage table, rows ``(channels, repeats, first stride)`` or ``(channels, repeats, first
        stride, expansion)``; the default :data:`FACE_BLOCKS` has total stride 16.
      stem_channels, stem_stride: the 3x3 stem convolution (before the width multiplier).
      last_channels: channels of the final 1x1 conv -> BN -> activation (not scaled by ``width``);
        ``None`` ends at the last bottleneck.
      activation: ``relu6`` (MobileNetV2) or ``prelu`` (MobileFaceNet).
      sync_batchnorm: cross-replica BN statistics (the builders in :mod:`tfface.methods` turn them on
        when the strategy has more than one replica; nets never look at the strategy).
    """
    sync = bool(sync_batchnorm)
    if width <= 0:
        raise ConfigError(f"width: must be > 0, got {width}")
    rows = [tuple(int(v) for v in row) for row in blocks]
    for row in rows:
        if len(row) not in (3, 4) or min(row) < 1:
            raise ConfigError(f"blocks: rows are (channels, repeats, stride[, expansion]) >= 1, got {row}")
    inp = keras.Input(tuple(input_shape), name="images")
    x = keras.layers.Conv2D(make_divisible(stem_channels * width), 3, strides=stem_stride, padding="same",
                            use_bias=False, name="stem_conv")(inp)
    x = batch_norm("stem_bn", sync)(x)
    x = activation_layer(activation, "stem_act")(x)
    for si, row in enumerate(rows):
        channels, repeats, stride = row[:3]
        t = row[3] if len(row) == 4 else expansion
        for r in range(repeats):
            x = inverted_residual(x, make_divisible(channels * width), stride if r == 0 else 1, t,
                                  f"stage{si}_block{r}", activation, sync)
    if last_channels:
        x = keras.layers.Conv2D(int(last_channels), 1, use_bias=False, name="last_conv")(x)
        x = batch_norm("last_bn", sync)(x)
        x = activation_layer(activation, "last_act")(x)
    return keras.Model(inp, x, name=name)
