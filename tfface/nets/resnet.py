"""iResNet-style backbone (insightface ``iresnet``, after Duta et al. 2020 "Improved Residual Networks").

Pre-activation basic block (insightface ``IBasicBlock``): BN -> conv3x3 -> BN -> PReLU -> conv3x3
(stride) -> BN, plus the shortcut (1x1 conv (stride) + BN when the shape changes). A 3x3 stride-1
stem (conv -> BN -> PReLU) suits small aligned faces; four stride-2 stages give 112 px -> 7x7,
64 px -> 4x4 and 32 px -> 2x2. The final BN is insightface's ``bn2``; the embedding head
(:class:`tfface.nets.EmbeddingHead`) follows.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfface.errors import ConfigError
from tfface.nets.normalization import batch_norm

# insightface's iresnet layer counts per stage.
DEPTHS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}


def ibasic_block(x, filters: int, stride: int, name: str, sync_batchnorm: bool = False):
    """insightface ``IBasicBlock``: BN-conv-BN-PReLU-conv(stride)-BN + shortcut."""
    h = batch_norm(f"{name}_bn1", sync_batchnorm)(x)
    h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv1")(h)
    h = batch_norm(f"{name}_bn2", sync_batchnorm)(h)
    h = keras.layers.PReLU(shared_axes=[1, 2], name=f"{name}_prelu")(h)
    h = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv2")(h)
    h = batch_norm(f"{name}_bn3", sync_batchnorm)(h)
    shortcut = x
    if stride != 1 or int(x.shape[-1]) != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_down")(x)
        shortcut = batch_norm(f"{name}_down_bn", sync_batchnorm)(shortcut)
    return keras.layers.Add(name=f"{name}_add")([h, shortcut])


def iresnet(
    input_shape: Sequence[int] = (112, 112, 3),
    depth: int | Sequence[int] = 18,
    width: int = 64,
    sync_batchnorm: bool = False,
    name: str = "iresnet",
) -> keras.Model:
    """An iResNet feature extractor: images -> feature map ``(H/16, W/16, 8 * width)``.

    Example:
      >>> net = iresnet((32, 32, 3), depth=[1, 1, 1, 1], width=8)
      >>> net.output_shape
      (None, 2, 2, 64)

    Args:
      input_shape: ``(H, W, C)``; the input is named ``images``.
      depth: 18, 34, 50, 100 or 200 (insightface's layer counts, see :data:`DEPTHS`), or blocks per
        stage, e.g. ``[2, 2, 2, 2]``. Every stage starts with a stride-2 block.
      width: channels of the first stage (insightface: 64); stage i has ``width * 2**i``.
      sync_batchnorm: cross-replica BN statistics (the builders in :mod:`tfface.methods` turn them on
        when the strategy has more than one replica; nets never look at the strategy).
    """
    sync = bool(sync_batchnorm)
    if isinstance(depth, int):
        if depth not in DEPTHS:
            raise ConfigError(f"depth: unknown {depth}; known: {sorted(DEPTHS)} or a list of blocks per stage")
        layers = DEPTHS[depth]
    else:
        layers = tuple(int(n) for n in depth)
        if not layers or min(layers) < 1:
            raise ConfigError(f"depth: blocks per stage must be >= 1, got {list(layers)}")
    if int(width) < 1:
        raise ConfigError(f"width: must be >= 1, got {width}")
    width = int(width)
    inp = keras.Input(tuple(input_shape), name="images")
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(inp)
    x = batch_norm("stem_bn", sync)(x)
    x = keras.layers.PReLU(shared_axes=[1, 2], name="stem_prelu")(x)
    for si, n in enumerate(layers):
        for b in range(n):
            x = ibasic_block(x, width * 2**si, 2 if b == 0 else 1, f"stage{si}_block{b}", sync)
    x = batch_norm("last_bn", sync)(x)
    return keras.Model(inp, x, name=name)


def resnet(input_shape: Sequence[int] = (112, 112, 3), **kwargs) -> keras.Model:
    """Alias of :func:`iresnet` (the registry name ``resnet``)."""
    kwargs.setdefault("name", "resnet")
    return iresnet(input_shape, **kwargs)
