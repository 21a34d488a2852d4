"""tfface.nets: Keras layers and models. No training logic, no files, no CLIs.

Importing this package registers tfface's serialisable layers (package ``tfface``), so
``keras.saving.load_model(path, safe_mode=True)`` can read models that use them.

- Backbones (images -> feature map), by name through :func:`build_backbone`: ``mobilenet_v2``,
  ``iresnet`` / ``resnet``.
- :class:`EmbeddingHead`: feature map -> D-dimensional embedding.
- Margin heads (embeddings, labels -> logits), by name through :func:`get_margin_head`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfface.errors import ConfigError
from tfface.nets.embedding_head import EmbeddingHead
from tfface.nets.margin_heads import (
    MARGIN_HEADS,
    ArcFace,
    CombinedMarginHead,
    CosFace,
    NormSoftmax,
    SoftmaxHead,
    SphereFace,
    get_margin_head,
)
from tfface.nets.mobilenet_v2 import FACE_BLOCKS, inverted_residual, mobilenet_v2
from tfface.nets.resnet import DEPTHS, ibasic_block, iresnet, resnet

BACKBONES = {"mobilenet_v2": mobilenet_v2, "iresnet": iresnet, "resnet": resnet}


def build_backbone(name: str, input_shape: Sequence[int], /, **kwargs) -> keras.Model:
    """A backbone by name (``mobilenet_v2``, ``iresnet``, ``resnet``): images -> feature map.

    Raises:
      ConfigError: an unknown ``name`` (the message names it and the known ones) or a keyword the
        builder does not take.
    """
    if name not in BACKBONES:
        raise ConfigError(f"backbone: unknown {name!r}; known: {sorted(BACKBONES)}")
    try:
        return BACKBONES[name](input_shape=tuple(input_shape), **kwargs)
    except TypeError as e:
        raise ConfigError(f"backbone_kwargs for {name!r}: {e}") from e


__all__ = [
    "ArcFace", "BACKBONES", "CombinedMarginHead", "CosFace", "DEPTHS", "EmbeddingHead", "FACE_BLOCKS",
    "MARGIN_HEADS", "NormSoftmax", "SoftmaxHead", "SphereFace", "build_backbone", "get_margin_head",
    "ibasic_block", "inverted_residual", "iresnet", "mobilenet_v2", "resnet",
]
