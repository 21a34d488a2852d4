"""tfface.training: the ``model.fit`` driver for recipes (:mod:`tfface.training.driver`, one per method: :mod:`tfface.training.recognizer` ...) and callbacks.

Attributes load on first use, so importing the package does not import TensorFlow.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ImageGridCallback": "tfface.training.callbacks",
    "default_callbacks": "tfface.training.callbacks",
    "image_grid": "tfface.training.callbacks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tfface.training' has no attribute {name!r}")
