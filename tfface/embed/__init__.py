"""tfface.embed: one :class:`Embedder` over Keras, SavedModel, ONNX, TFLite and callables, with named preprocessings.

Example::

    from tfface.embed import Embedder, extract_features
    emb = Embedder.load("runs/export/embedder/1", "tfface64")
    extract_features(emb, images, labels, "features/test.npz")
"""

from __future__ import annotations

from tfface.embed.embedder import Embedder, extract_features
from tfface.embed.preprocessing import (
    Preprocessing,
    available_preprocessings,
    get_preprocessing,
    register_preprocessing,
)

__all__ = [
    "Embedder",
    "Preprocessing",
    "available_preprocessings",
    "extract_features",
    "get_preprocessing",
    "register_preprocessing",
]
