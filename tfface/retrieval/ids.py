"""Ids of an :class:`~tfface.retrieval.index.Index`: int64 (``>= 0``) or non-empty strings, never mixed.

``-1`` (int ids) and ``""`` (string ids) are reserved: they pad a search result row where fewer than
``k`` entries were found.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from tfface.errors import DataError

__all__ = ["auto_ids", "check_ids", "id_keys", "ids_of_rows", "kind_of"]

_WORD = {"int": "integer", "str": "string"}


def kind_of(ids: np.ndarray) -> str:
    """``"str"`` for a unicode id array, else ``"int"``."""
    return "str" if ids.dtype.kind == "U" else "int"


def check_ids(ids: ArrayLike, n: int | None, name: str = "ids", expected_kind: str | None = None) -> np.ndarray:
    """Return ``ids`` as a unique 1-D int64 or unicode array (of length ``n`` if given).

    ``expected_kind`` (``"int"``/``"str"``), when given, is the kind the index already holds.
    """
    try:
        arr = np.asarray(ids)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name}: cannot be read as an array ({err})") from err
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise DataError(f"{name}: length {arr.shape[0]} does not match the {n} vectors")
    if arr.shape[0] == 0:
        raise DataError(f"{name}: is empty")
    if arr.dtype.kind == "O":
        vals = arr.tolist()
        if all(isinstance(v, str) for v in vals):
            arr = np.array(vals, dtype=str)
        elif all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in vals):
            arr = np.array(vals, dtype=np.int64)
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max:
            raise DataError(f"{name}: values exceed the int64 range")
        arr = arr.astype(np.int64)
        if (arr < 0).any():
            raise DataError(f"{name}: integer ids must be >= 0 (-1 marks a missing neighbour), got {arr.min()}")
        kind = "int"
    elif arr.dtype.kind == "U":
        if (arr == "").any():
            raise DataError(f"{name}: string ids must be non-empty ('' marks a missing neighbour)")
        kind = "str"
    else:
        raise DataError(f"{name}: ids must be integers or strings, got dtype {arr.dtype} (shape {arr.shape})")
    if expected_kind is not None and kind != expected_kind:
        raise DataError(
            f"{name}: the index holds {_WORD[expected_kind]} ids, got {_WORD[kind]} ids (dtype {arr.dtype})"
        )
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{name}: duplicate ids in the request: {uniq[counts > 1][:10].tolist()}")
    return arr


def auto_ids(existing: np.ndarray, kind: str | None, n: int) -> np.ndarray:
    """``n`` new int ids continuing from the largest of ``existing``; string-id indexes have none."""
    if kind == "str":
        raise DataError("ids: this index holds string ids; pass ids explicitly")
    start = int(existing.max()) + 1 if existing.size else 0
    return np.arange(start, start + n, dtype=np.int64)


def id_keys(ids: np.ndarray) -> list:
    """Hashable Python keys of ``ids`` (for the id -> row map)."""
    return ids.tolist()


def ids_of_rows(ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``ids[rows]``, with ``-1`` / ``""`` where a row is ``-1`` (a missing neighbour)."""
    missing = rows < 0
    out = ids[np.where(missing, 0, rows)] if ids.size else np.zeros(rows.shape, np.int64)
    if missing.any():
        out = out.copy()
        out[missing] = "" if out.dtype.kind == "U" else -1
    return out
