"""Loading ``.keras`` files safely: every command that reads a model goes through :func:`load_keras_file`.

Models are loaded with ``keras.saving.load_model(path, safe_mode=True)``: a file whose config would run
Python code (a ``Lambda`` layer holding a Python function, or anything else Keras' safe mode refuses) is
refused with one :class:`~tfface.errors.DataError` naming the file. The message never suggests turning
safe mode off: a model file from elsewhere is data, not code to run.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from tfface.errors import DataError

_UNSAFE_HINTS = ("safe_mode", "unsafe_deserialization", "arbitrary code")


def load_keras_file(path: str | os.PathLike, what: str = "model", custom_objects: dict | None = None,
                    compile: bool = False) -> Any:
    """``keras.saving.load_model(path, safe_mode=True)``, with one-line :class:`DataError`\\ s naming ``path``.

    ``what`` names the file's role in the messages (``"model"``, ``"translator"``).
    """
    import keras

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} file not found: {p}")
    with contextlib.suppress(ImportError):
        import tfface.nets  # noqa: F401  registers tfface's serialisable layers
    try:
        return keras.saving.load_model(p, custom_objects=custom_objects, safe_mode=True, compile=compile)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a bad archive
        text = str(e)
        if any(h in text for h in _UNSAFE_HINTS):
            kind = "a Lambda layer" if "Lambda" in text else "an object"
            raise DataError(f"{what} {p}: refused: the file holds {kind} whose Python code would run on "
                            "loading; tfface only loads models in Keras' safe mode (save the model without "
                            "Lambda layers, e.g. with a registered custom layer)") from None
        first = text.strip().splitlines()[0] if text.strip() else ""
        raise DataError(f"{what} {p}: cannot load the .keras file ({type(e).__name__}: {first})"[:500]) from e
