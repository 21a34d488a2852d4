"""The rows of an :class:`~tfface.retrieval.index.Index`: stored vectors, their ids, and tombstones.

Rows ``[0, B)`` are the *base* (from the last rebuild or load; may be a read-only memmap of
``vectors.npy``), rows ``[B, R)`` the *tail* (a growable in-memory buffer of entries added since).
Replaced or deleted entries are *tombstoned* (``live[row] = False``) until :meth:`RowStore.compact`
drops them. Row numbers are what the searchers return; :attr:`RowStore.ids` maps them to ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from tfface.errors import DataError
from tfface.retrieval.ids import id_keys

__all__ = ["CHUNK", "RowStore", "chunks", "prepare_vectors", "progress_bar"]

CHUNK = 65_536  # rows per validation / normalisation / write step


def chunks(n: int, size: int = CHUNK) -> list[slice]:
    """``[0, n)`` in slices of ``size``."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def progress_bar(iterable, enabled: bool, **kw):
    """``iterable``, wrapped in a tqdm bar when ``enabled``."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, **kw)


def prepare_vectors(x: ArrayLike, dim: int, metric: str, name: str, progress: bool = False) -> np.ndarray:
    """Validate ``x`` as ``[N, dim]`` finite numbers; return float32 (normalised for cosine), a new array."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name}: cannot be read as an array ({err})") from err
    if arr.dtype.kind not in "iuf":
        raise DataError(f"{name}: expected numbers, got dtype {arr.dtype} with shape {arr.shape}")
    if arr.ndim != 2:
        raise DataError(f"{name}: expected a 2-D array [N, {dim}], got shape {arr.shape}")
    if arr.shape[1] != dim:
        raise DataError(
            f"{name}: dimension {arr.shape[1]} does not match the index dimension {dim} (shape {arr.shape})"
        )
    if arr.shape[0] == 0:
        raise DataError(f"{name}: is empty, shape {arr.shape}")
    out = np.empty(arr.shape, np.float32)
    parts = chunks(arr.shape[0])
    for sl in progress_bar(parts, progress and len(parts) > 1, desc=f"checking {name}", unit="chunk"):
        c = arr[sl].astype(np.float32)
        bad = ~np.isfinite(c)
        if bad.any():
            row = sl.start + int(np.argwhere(bad)[0, 0])
            raise DataError(f"{name}: contains NaN or Inf (first at row {row}; shape {arr.shape})")
        if metric == "cosine":
            norms = np.linalg.norm(c.astype(np.float64), axis=1)
            zero = norms == 0
            if zero.any():
                raise DataError(
                    f"{name}: row {sl.start + int(np.argmax(zero))} has zero norm (shape {arr.shape}); "
                    "cosine is undefined"
                )
            c = (c / norms[:, None]).astype(np.float32)
        out[sl] = c
    return out


class RowStore:
    """Base rows + tail rows, their ids and live flags, and a lazily built id -> row map of live entries."""

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)
        self.base = np.zeros((0, self.dim), np.float32)  # rows [0, B): may be a read-only memmap
        self._tail = np.zeros((0, self.dim), np.float32)  # rows [B, R): growable buffer
        self._tail_n = 0
        self.ids = np.zeros(0, np.int64)  # one per row, tombstoned rows included
        self.live = np.zeros(0, bool)
        self.count = 0  # live rows
        self._row_of: dict | None = None

    @classmethod
    def from_arrays(cls, vectors: np.ndarray, ids: np.ndarray) -> RowStore:
        """All rows live, ``vectors`` (``[N, D]`` float32, e.g. a memmap) as the base."""
        store = cls(vectors.shape[1])
        store.base, store.ids = vectors, ids
        store.live = np.ones(ids.shape[0], bool)
        store.count = int(ids.shape[0])
        return store

    @property
    def rows(self) -> int:
        """Stored rows, tombstones included."""
        return int(self.base.shape[0]) + self._tail_n

    def blocks(self, start: int, stop: int) -> list[np.ndarray]:
        """Rows ``[start, stop)`` as at most two views (base part, tail part)."""
        b = int(self.base.shape[0])
        out = []
        if start < b:
            out.append(self.base[start : min(stop, b)])
        if stop > b:
            out.append(self._tail[max(start, b) - b : stop - b])
        return out

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """``[len(rows), D]`` copies of the given rows."""
        rows = np.asarray(rows, dtype=np.int64)
        b = int(self.base.shape[0])
        out = np.empty((rows.shape[0], self.dim), np.float32)
        in_base = rows < b
        if in_base.any():
            out[in_base] = self.base[rows[in_base]]
        if (~in_base).any():
            out[~in_base] = self._tail[rows[~in_base] - b]
        return out

    def append(self, x: np.ndarray, ids: np.ndarray) -> None:
        """Append rows ``x`` (a fresh array the store may adopt, from :func:`prepare_vectors`) with ``ids``."""
        m = x.shape[0]
        cap = self._tail.shape[0]
        if self._tail_n == 0 and cap < m:
            self._tail = x  # adopt it: no copy
        else:
            if self._tail_n + m > cap:
                grown = np.empty((max(2 * cap, self._tail_n + m), self.dim), np.float32)
                grown[: self._tail_n] = self._tail[: self._tail_n]
                self._tail = grown
            self._tail[self._tail_n : self._tail_n + m] = x
        start = self.rows
        self._tail_n += m
        self.ids = np.concatenate([self.ids, ids]) if self.ids.size else ids.copy()
        self.live = np.concatenate([self.live, np.ones(m, bool)])
        self.count += m
        if self._row_of is not None:
            self._row_of.update(zip(id_keys(ids), range(start, start + m), strict=True))

    def kill(self, rows: Sequence[int]) -> None:
        """Tombstone ``rows`` (already removed from the row map by the caller)."""
        for r in rows:
            self.live[r] = False
        self.count -= len(rows)

    def rowmap(self) -> dict:
        """``{id: row}`` of the live entries (built on first use, then kept up to date)."""
        if self._row_of is None:
            live = np.flatnonzero(self.live)
            self._row_of = dict(zip(id_keys(self.ids[live]), live.tolist(), strict=True))
        return self._row_of

    def compact(self) -> np.ndarray:
        """Keep only the live rows, all in the base (one array); return the new base."""
        live = np.flatnonzero(self.live)
        if live.size == self.rows:
            blocks = self.blocks(0, self.rows)
            base = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
            if not blocks:
                base = np.zeros((0, self.dim), np.float32)
        else:
            base = self.gather(live)
        self.base, self._tail, self._tail_n = base, np.zeros((0, self.dim), np.float32), 0
        self.ids = self.ids[live]
        self.live = np.ones(live.size, bool)
        self._row_of = None
        return base

    def drop_dead_tail(self) -> None:
        """Drop tombstoned rows from the tail (the base is untouched: tombstones must lie in the tail only)."""
        keep = np.flatnonzero(self.live)
        tail_rows = keep[keep >= self.base.shape[0]]
        self._tail = self.gather(tail_rows)
        self._tail_n = int(tail_rows.size)
        self.ids = self.ids[keep]
        self.live = np.ones(keep.size, bool)
        self._row_of = None
