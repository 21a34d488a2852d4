"""``Index``: a face-embedding gallery searchable by ScaNN, with an exact TensorFlow reference.

Vectors are L2-normalised on the way in (metric ``"cosine"``) or used as given (``"dot_product"``,
for embeddings that are already normalised); scores are inner products, higher is better. Ids are
int64 (``>= 0``) or strings (non-empty).

Updates (``add``, ``upsert``, ``delete``) do not touch the ScaNN searcher. New rows form a *tail*
that is searched exactly and merged with the searcher's results; replaced or deleted rows are
*tombstoned* and filtered out of the searcher's results (which are over-fetched, and re-fetched deeper
when too many tombstones came back, so a search never returns a deleted id and still returns ``k``
live entries). Once the tail plus the tombstones exceed ``rebuild_fraction`` of the index, the next
search rebuilds the searcher over the live rows with the configuration the size rules give for the
new size (:func:`~tfface.retrieval.scann_config.choose_config`). ScaNN's own dynamic ``upsert``/``delete``
are not used: they renumber datapoints and keep the partitioning trained on the old data.

``save`` writes a directory (atomically: a temporary directory renamed into place)::

    manifest.json   dimension, metric, count, config, versions, SHA-256 of every file below
    vectors.npy     [count, D] float32, normalised (the source of truth: rebuilds, export, exact search)
    ids.npy         [count] int64 or fixed-width unicode
    scann/          the serialized ScaNN searcher over the first ``searcher_rows`` rows (relative paths)

No file is pickled. Deleted entries are erased on ``save``: if a tombstone lies inside the searcher,
the searcher is rebuilt first (ScaNN's files hold quantised copies of every vector they index).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tfface.atomic import atomic_dir
from tfface.errors import ConfigError, DataError
from tfface.retrieval.exact import exact_top_k
from tfface.retrieval.manifest import MANIFEST_NAME, read_manifest, verify_files, write_manifest
from tfface.retrieval.scann_config import (
    ScannConfig,
    build_searcher,
    choose_config,
    scann_pybind,
    scann_version,
)

__all__ = ["BACKENDS", "METRICS", "Index", "SearchResult"]

METRICS = ("cosine", "dot_product")
BACKENDS = ("scann", "exact")
_CHUNK = 65_536  # rows per validation / normalisation step


@dataclass
class SearchResult:
    """Top-``k`` neighbours of each query, best first.

    Attributes:
        ids: ``[Q, k]`` ids (int64 or unicode). Where an approximate search found fewer than ``k``
            entries the row is padded with ``-1`` (int ids) or ``""`` (string ids).
        scores: ``[Q, k]`` float32 inner products (cosine similarity for ``metric="cosine"``); padding
            is ``-inf``.
    """

    ids: np.ndarray
    scores: np.ndarray


def _chunks(n: int, size: int = _CHUNK) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _progress(iterable, enabled: bool, **kw):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, **kw)


class Index:
    """A gallery of embeddings with ids, searchable by ScaNN (or exactly), updatable, saved to a directory.

    Args:
        dim: embedding dimension ``D``.
        metric: ``"cosine"`` (inputs are L2-normalised) or ``"dot_product"`` (inputs used as given).
        backend: ``"scann"`` (approximate; configuration by size, see :func:`choose_config`) or
            ``"exact"`` (batched TensorFlow matrix products).
        config: ScaNN overrides, a ``dict`` of :class:`ScannConfig` fields (the size rules fill in
            the rest at every rebuild) or a full :class:`ScannConfig` (used as is).
        rebuild_fraction: rebuild the searcher at the next search once the unindexed tail plus the
            tombstones exceed this fraction of the live entries.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(500, 64)).astype("float32")
        >>> index = Index.build(x, ids=np.arange(500))
        >>> res = index.search(x[:3], k=5)
        >>> res.ids[:, 0].tolist()
        [0, 1, 2]
    """

    def __init__(
        self,
        dim: int,
        *,
        metric: str = "cosine",
        backend: str = "scann",
        config: dict[str, Any] | ScannConfig | None = None,
        rebuild_fraction: float = 0.1,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
            raise ConfigError(f"dim: expected a positive integer, got {dim!r}")
        if metric not in METRICS:
            raise ConfigError(f"metric: expected one of {METRICS}, got {metric!r}")
        if backend not in BACKENDS:
            raise ConfigError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        if isinstance(rebuild_fraction, bool) or not isinstance(rebuild_fraction, int | float) or not (
            0 <= rebuild_fraction < math.inf
        ):
            raise ConfigError(f"rebuild_fraction: expected a number >= 0, got {rebuild_fraction!r}")
        if config is not None and not isinstance(config, dict | ScannConfig):
            raise ConfigError(f"config: expected a dict of ScannConfig fields or a ScannConfig, got {type(config).__name__}")
        if isinstance(config, ScannConfig):
            self._fixed_config: ScannConfig | None = config
            self._overrides: dict[str, Any] = config.to_dict()
        else:
            self._fixed_config = None
            self._overrides = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in (config or {}).items()}
            ScannConfig.from_dict({k: v for k, v in self._overrides.items()})  # unknown keys -> ConfigError
        self._dim = int(dim)
        self._metric = metric
        self._backend = backend
        self.rebuild_fraction = float(rebuild_fraction)
        self._base = np.zeros((0, self._dim), np.float32)  # rows [0, B): may be a read-only memmap
        self._tail = np.zeros((0, self._dim), np.float32)  # rows [B, R): growable buffer
        self._tail_n = 0
        self._ids = np.zeros(0, np.int64)
        self._id_kind: str | None = None  # "int" or "str" once the first ids arrive
        self._live = np.zeros(0, bool)
        self._count = 0
        self._searcher = None
        self._searcher_rows = 0  # the searcher covers rows [0, S)
        self._searcher_config: ScannConfig | None = None
        self._dead_in_searcher = 0
        self._row_of: dict | None = None  # id -> row of the live entries, built lazily

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self._dim

    @property
    def metric(self) -> str:
        """``"cosine"`` or ``"dot_product"``."""
        return self._metric

    @property
    def backend(self) -> str:
        """``"scann"`` or ``"exact"``."""
        return self._backend

    @property
    def config(self) -> ScannConfig | None:
        """The configuration of the current ScaNN searcher (``None`` before the first build or for ``exact``)."""
        return self._searcher_config

    @property
    def config_overrides(self) -> dict[str, Any]:
        """The ScaNN overrides given at construction."""
        return dict(self._overrides)

    @property
    def id_kind(self) -> str | None:
        """``"int"``, ``"str"``, or ``None`` while the index has never held an entry."""
        return self._id_kind

    @property
    def pending(self) -> int:
        """Entries not yet folded into the searcher: unindexed tail rows plus tombstones inside it."""
        return (self._rows - self._searcher_rows) + self._dead_in_searcher

    @property
    def ids(self) -> np.ndarray:
        """Ids of the live entries, in storage order (a copy)."""
        return self._ids[self._live].copy()

    def vectors(self) -> np.ndarray:
        """``[len, D]`` stored (normalised) vectors of the live entries, in the order of :attr:`ids`."""
        return self._gather(np.flatnonzero(self._live))

    def __len__(self) -> int:
        return self._count

    def __contains__(self, item: Any) -> bool:
        try:
            key = self._keys(self._check_ids([item], 1, "id"))[0]
        except DataError:
            return False
        return key in self._rowmap()

    def __repr__(self) -> str:
        mode = self._searcher_config.mode if self._searcher_config else None
        return (
            f"Index(dim={self._dim}, metric={self._metric!r}, backend={self._backend!r}, count={self._count}, "
            f"mode={mode!r}, pending={self.pending})"
        )

    # ------------------------------------------------------------------ storage helpers
    @property
    def _rows(self) -> int:
        return int(self._base.shape[0]) + self._tail_n

    def _blocks(self, start: int, stop: int) -> list[np.ndarray]:
        b = int(self._base.shape[0])
        out = []
        if start < b:
            out.append(self._base[start : min(stop, b)])
        if stop > b:
            out.append(self._tail[max(start, b) - b : stop - b])
        return out

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        b = int(self._base.shape[0])
        out = np.empty((rows.shape[0], self._dim), np.float32)
        in_base = rows < b
        if in_base.any():
            out[in_base] = self._base[rows[in_base]]
        if (~in_base).any():
            out[~in_base] = self._tail[rows[~in_base] - b]
        return out

    def _append(self, x: np.ndarray, ids: np.ndarray) -> None:
        """Append rows ``x`` (a fresh array owned by the index, from :meth:`_prepare`) with ``ids``."""
        m = x.shape[0]
        cap = self._tail.shape[0]
        if self._tail_n == 0 and cap < m:
            self._tail = x  # adopt it: no copy
        else:
            if self._tail_n + m > cap:
                grown = np.empty((max(2 * cap, self._tail_n + m), self._dim), np.float32)
                grown[: self._tail_n] = self._tail[: self._tail_n]
                self._tail = grown
            self._tail[self._tail_n : self._tail_n + m] = x
        start = self._rows
        self._tail_n += m
        self._ids = np.concatenate([self._ids, ids]) if self._ids.size else ids.copy()
        self._live = np.concatenate([self._live, np.ones(m, bool)])
        self._count += m
        if self._row_of is not None:
            self._row_of.update(zip(self._keys(ids), range(start, start + m), strict=True))

    def _kill(self, rows: Sequence[int]) -> None:
        for r in rows:
            self._live[r] = False
            if r < self._searcher_rows:
                self._dead_in_searcher += 1
        self._count -= len(rows)

    def _rowmap(self) -> dict:
        if self._row_of is None:
            live = np.flatnonzero(self._live)
            self._row_of = dict(zip(self._keys(self._ids[live]), live.tolist(), strict=True))
        return self._row_of

    @staticmethod
    def _keys(ids: np.ndarray) -> list:
        return ids.tolist()

    # ------------------------------------------------------------------ input checks
    def _prepare(self, x: ArrayLike, name: str, progress: bool = False) -> np.ndarray:
        """Validate ``x`` as ``[N, D]`` finite numbers; return float32 (normalised for cosine), a new array."""
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise DataError(f"{name}: cannot be read as an array ({err})") from err
        if arr.dtype.kind not in "iuf":
            raise DataError(f"{name}: expected numbers, got dtype {arr.dtype} with shape {arr.shape}")
        if arr.ndim != 2:
            raise DataError(f"{name}: expected a 2-D array [N, {self._dim}], got shape {arr.shape}")
        if arr.shape[1] != self._dim:
            raise DataError(
                f"{name}: dimension {arr.shape[1]} does not match the index dimension {self._dim} "
                f"(shape {arr.shape})"
            )
        if arr.shape[0] == 0:
            raise DataError(f"{name}: is empty, shape {arr.shape}")
        out = np.empty(arr.shape, np.float32)
        parts = _chunks(arr.shape[0])
        for sl in _progress(parts, progress and len(parts) > 1, desc=f"checking {name}", unit="chunk"):
            c = arr[sl].astype(np.float32)
            bad = ~np.isfinite(c)
            if bad.any():
                row = sl.start + int(np.argwhere(bad)[0, 0])
                raise DataError(f"{name}: contains NaN or Inf (first at row {row}; shape {arr.shape})")
            if self._metric == "cosine":
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

    def _check_ids(self, ids: ArrayLike, n: int | None, name: str = "ids") -> np.ndarray:
        """Return ``ids`` as a unique 1-D int64 or unicode array (of length ``n`` if given)."""
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
        if self._id_kind is not None and kind != self._id_kind:
            word = {"int": "integer", "str": "string"}
            raise DataError(
                f"{name}: the index holds {word[self._id_kind]} ids, got {word[kind]} ids (dtype {arr.dtype})"
            )
        uniq, counts = np.unique(arr, return_counts=True)
        if (counts > 1).any():
            raise DataError(f"{name}: duplicate ids in the request: {uniq[counts > 1][:10].tolist()}")
        return arr

    def _auto_ids(self, n: int) -> np.ndarray:
        if self._id_kind == "str":
            raise DataError("ids: this index holds string ids; pass ids explicitly")
        start = int(self._ids.max()) + 1 if self._ids.size else 0
        return np.arange(start, start + n, dtype=np.int64)

    # ------------------------------------------------------------------ construction and updates
    @classmethod
    def build(
        cls,
        vectors: ArrayLike,
        ids: ArrayLike | None = None,
        *,
        metric: str = "cosine",
        backend: str = "scann",
        config: dict[str, Any] | ScannConfig | None = None,
        rebuild_fraction: float = 0.1,
        progress: bool = False,
    ) -> Index:
        """An index over ``vectors [N, D]`` with ``ids`` (default ``0..N-1``), its searcher built."""
        arr = np.asarray(vectors)
        if arr.ndim != 2:
            raise DataError(f"vectors: expected a 2-D array [N, D], got shape {arr.shape}")
        index = cls(arr.shape[1], metric=metric, backend=backend, config=config, rebuild_fraction=rebuild_fraction)
        index.add(arr, ids, progress=progress)
        index.rebuild(progress=progress)
        return index

    def add(self, vectors: ArrayLike, ids: ArrayLike | None = None, *, progress: bool = False) -> None:
        """Add new entries; an id already in the index raises ``DataError`` and nothing changes.

        ``ids`` may be omitted for an int-id index: they continue from the largest id so far.
        """
        x = self._prepare(vectors, "vectors", progress)
        idn = self._auto_ids(x.shape[0]) if ids is None else self._check_ids(ids, x.shape[0])
        if self._count:
            rowmap = self._rowmap()
            dup = [i for i in self._keys(idn) if i in rowmap]
            if dup:
                raise DataError(
                    f"ids: {len(dup)} already in the index (first: {dup[:10]}); use upsert to replace them"
                )
        self._id_kind = self._id_kind or ("str" if idn.dtype.kind == "U" else "int")
        self._append(x, idn)

    def upsert(self, vectors: ArrayLike, ids: ArrayLike, *, progress: bool = False) -> int:
        """Insert entries, replacing the vectors of ids already present. Returns how many were replaced."""
        x = self._prepare(vectors, "vectors", progress)
        idn = self._check_ids(ids, x.shape[0])
        rowmap = self._rowmap()
        old = [rowmap.pop(i) for i in self._keys(idn) if i in rowmap]
        self._kill(old)
        self._id_kind = self._id_kind or ("str" if idn.dtype.kind == "U" else "int")
        self._append(x, idn)
        return len(old)

    def delete(self, ids: ArrayLike) -> None:
        """Remove entries by id; an unknown id raises ``DataError`` and nothing changes."""
        idn = self._check_ids(ids, None)
        rowmap = self._rowmap()
        keys = self._keys(idn)
        missing = [i for i in keys if i not in rowmap]
        if missing:
            raise DataError(f"ids: {len(missing)} of {len(keys)} not in the index (first: {missing[:10]})")
        self._kill([rowmap.pop(i) for i in keys])

    def maybe_rebuild(self, progress: bool = False) -> bool:
        """Rebuild the ScaNN searcher if the pending changes exceed ``rebuild_fraction``; True if it did."""
        if self._backend != "scann" or self._count == 0:
            return False
        if self._searcher is None or self.pending > self.rebuild_fraction * self._count:
            self.rebuild(progress=progress)
            return True
        return False

    def rebuild(self, progress: bool = False) -> None:
        """Drop tombstoned rows and (backend ``scann``) build the searcher over all live entries."""
        live = np.flatnonzero(self._live)
        if live.size == self._rows:
            blocks = self._blocks(0, self._rows)
            base = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
            if not blocks:
                base = np.zeros((0, self._dim), np.float32)
        else:
            base = self._gather(live)
        self._base, self._tail, self._tail_n = base, np.zeros((0, self._dim), np.float32), 0
        self._ids = self._ids[live]
        self._live = np.ones(live.size, bool)
        self._row_of = None
        self._dead_in_searcher = 0
        self._searcher, self._searcher_rows, self._searcher_config = None, 0, None
        if self._backend == "scann" and self._count:
            cfg = self._fixed_config or choose_config(self._count, self._dim, self._overrides)
            bar = _progress(range(1), progress, desc=f"building ScaNN {cfg.mode} over {self._count} vectors")
            for _ in bar:
                self._searcher = build_searcher(self._base, cfg)
            self._searcher_rows, self._searcher_config = self._count, cfg

    # ------------------------------------------------------------------ search
    def search(
        self,
        queries: ArrayLike,
        k: int = 10,
        *,
        exact: bool = False,
        rescore: bool = False,
        leaves_to_search: int | None = None,
        pre_reorder_num_neighbors: int | None = None,
        batch_size: int = 10_000,
        progress: bool = False,
    ) -> SearchResult:
        """The ``k`` best entries for each query (``k`` is capped at ``len(self)``).

        Args:
            queries: ``[Q, D]``; normalised for ``metric="cosine"``.
            k: neighbours per query.
            exact: search exactly (TensorFlow matrix products) whatever the backend: the reference.
            rescore: recompute the returned entries' scores from the stored float32 vectors and
                re-sort them (exact scores after an int8 rescoring stage).
            leaves_to_search: tree leaves to visit (``tree_ah`` only); default from the config.
            pre_reorder_num_neighbors: candidates rescored by ScaNN's reorder stage; default
                ``max(reorder_k, 2 * fetched)``.
            batch_size: queries per batch (memory and progress-bar granularity).
            progress: show a tqdm bar over batches.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ConfigError(f"k: expected a positive integer, got {k!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
        if self._count == 0:
            raise DataError("index is empty: add vectors before searching")
        q = self._prepare(queries, "queries")
        use_exact = exact or self._backend == "exact"
        if not use_exact:
            self.maybe_rebuild(progress=progress)
            cfg = self._searcher_config
            if leaves_to_search is not None:
                if cfg.mode != "tree_ah":
                    raise ConfigError(f"leaves_to_search: applies to tree_ah searchers only, this one is {cfg.mode}")
                if isinstance(leaves_to_search, bool) or not isinstance(leaves_to_search, int | np.integer) or not (
                    1 <= leaves_to_search <= cfg.num_leaves
                ):
                    raise ConfigError(
                        f"leaves_to_search: expected an integer in [1, {cfg.num_leaves}], got {leaves_to_search!r}"
                    )
            if pre_reorder_num_neighbors is not None and (
                isinstance(pre_reorder_num_neighbors, bool)
                or not isinstance(pre_reorder_num_neighbors, int | np.integer)
                or pre_reorder_num_neighbors < 1
            ):
                raise ConfigError(
                    f"pre_reorder_num_neighbors: expected a positive integer, got {pre_reorder_num_neighbors!r}"
                )
        k_eff = min(int(k), self._count)
        scores = np.empty((q.shape[0], k_eff), np.float32)
        rows = np.empty((q.shape[0], k_eff), np.int64)
        parts = _chunks(q.shape[0], int(batch_size))
        for sl in _progress(parts, progress, desc="searching", unit="batch"):
            if use_exact:
                s, r = self._search_exact(q[sl], k_eff)
            else:
                s, r = self._search_scann(q[sl], k_eff, leaves_to_search, pre_reorder_num_neighbors)
            if rescore:
                s, r = self._rescore(q[sl], s, r)
            scores[sl], rows[sl] = s, r
        return SearchResult(ids=self._ids_of(rows), scores=scores)

    def _ids_of(self, rows: np.ndarray) -> np.ndarray:
        missing = rows < 0
        ids = self._ids[np.where(missing, 0, rows)] if self._ids.size else np.zeros(rows.shape, np.int64)
        if missing.any():
            ids = ids.copy()
            ids[missing] = "" if ids.dtype.kind == "U" else -1
        return ids

    def _search_exact(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        keep = None if self._count == self._rows else self._live
        return exact_top_k(q, self._blocks(0, self._rows), k, keep)

    def _search_scann(
        self, q: np.ndarray, k: int, leaves: int | None, pre: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        s_cap, rows_total = self._searcher_rows, self._rows
        parts_s, parts_r = [], []
        live_in_searcher = s_cap - self._dead_in_searcher
        if live_in_searcher:
            ps, pr = self._scann_live(q, min(k, live_in_searcher), leaves, pre)
            parts_s.append(ps)
            parts_r.append(pr)
        if rows_total > s_cap:
            keep = self._live[s_cap:rows_total]
            n_keep = int(keep.sum())
            if n_keep:
                ts, tr = exact_top_k(q, self._blocks(s_cap, rows_total), min(k, n_keep), keep)
                parts_s.append(ts)
                parts_r.append(np.where(tr >= 0, tr + s_cap, -1))
        cand_s = np.concatenate(parts_s, axis=1)
        cand_r = np.concatenate(parts_r, axis=1)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        out_s = np.full((q.shape[0], k), -np.inf, np.float32)
        out_r = np.full((q.shape[0], k), -1, np.int64)
        m = order.shape[1]
        out_s[:, :m] = np.take_along_axis(cand_s, order, 1)
        out_r[:, :m] = np.take_along_axis(cand_r, order, 1)
        return out_s, out_r

    def _scann_raw(self, q: np.ndarray, fetch: int, leaves: int | None, pre: int | None):
        cfg = self._searcher_config
        kwargs: dict[str, int] = {"final_num_neighbors": int(fetch)}
        if cfg.mode != "brute_force":
            kwargs["pre_reorder_num_neighbors"] = int(max(pre or max(cfg.reorder_k, 2 * fetch), fetch))
        if cfg.mode == "tree_ah" and leaves is not None:
            kwargs["leaves_to_search"] = int(leaves)
        threads = cfg.search_threads or (os.cpu_count() or 1)
        if threads > 1 and q.shape[0] > 1:
            batch = int(min(256, max(8, math.ceil(q.shape[0] / (2 * threads)))))
            rows, scores = self._searcher.search_batched_parallel(q, batch_size=batch, **kwargs)
        else:
            rows, scores = self._searcher.search_batched(q, **kwargs)
        rows = np.asarray(rows, dtype=np.int64).reshape(q.shape[0], -1)
        scores = np.asarray(scores, dtype=np.float32).reshape(q.shape[0], -1)
        valid = np.isfinite(scores)  # ScaNN pads with NaN when it found fewer entries
        return np.where(valid, scores, -np.inf).astype(np.float32), np.where(valid, rows, -1), valid

    def _scann_live(
        self, q: np.ndarray, k: int, leaves: int | None, pre: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` live entries from the searcher: over-fetch past tombstones, deeper where needed."""
        s_cap, dead = self._searcher_rows, self._dead_in_searcher
        live_n = s_cap - dead
        extra = 0 if dead == 0 else min(dead, max(2 * k, math.ceil(3 * k * dead / max(live_n, 1))))
        fetch = min(s_cap, k + extra)
        out_s = np.full((q.shape[0], k), -np.inf, np.float32)
        out_r = np.full((q.shape[0], k), -1, np.int64)
        todo = np.arange(q.shape[0])
        while todo.size:
            sc, rows, valid = self._scann_raw(q[todo], fetch, leaves, pre)
            ok = valid & self._live[np.where(valid, rows, 0)]
            exhausted = (valid.sum(1) < fetch) | (fetch >= s_cap)
            done = (ok.sum(1) >= k) | exhausted
            if done.any():
                okd = ok[done]
                order = np.argsort(~okd, axis=1, kind="stable")[:, :k]  # live entries first, in score order
                sel = np.take_along_axis(okd, order, 1)
                m = order.shape[1]
                out_s[todo[done], :m] = np.where(sel, np.take_along_axis(sc[done], order, 1), -np.inf)
                out_r[todo[done], :m] = np.where(sel, np.take_along_axis(rows[done], order, 1), -1)
            todo = todo[~done]
            fetch = min(s_cap, 2 * fetch)
        return out_s, out_r

    def _rescore(self, q: np.ndarray, s: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = r >= 0
        vec = self._gather(np.where(valid, r, 0).ravel()).reshape(r.shape[0], r.shape[1], self._dim)
        exact = np.einsum("qd,qkd->qk", q, vec).astype(np.float32)
        exact[~valid] = -np.inf
        order = np.argsort(-exact, axis=1, kind="stable")
        return np.take_along_axis(exact, order, 1), np.take_along_axis(r, order, 1)

    # ------------------------------------------------------------------ size
    def index_bytes(self) -> int:
        """Bytes of the search structure, measured as the size of the serialized ScaNN searcher on disk
        (backend ``exact``: the float32 vectors). Pending tail rows count as float32."""
        tail = (self._rows - self._searcher_rows) * self._dim * 4
        if self._backend == "exact" or self._searcher is None:
            return self._rows * self._dim * 4
        tmp = Path(tempfile.mkdtemp(prefix="tfface-scann-size-"))
        try:
            self._searcher.serialize(str(tmp), True)
            return sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()) + tail
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, *, progress: bool = False) -> Path:
        """Write the index to the directory ``path`` atomically (see the module docstring).

        An existing index directory at ``path`` is replaced only once the new one is complete; a
        directory that is not a tfface index is never replaced. Tombstones inside the searcher cause a
        rebuild first, so deleted embeddings leave the disk.
        """
        target = Path(path)
        if target.exists():
            if not target.is_dir():
                raise DataError(f"{target}: exists and is not a directory")
            if any(target.iterdir()) and not (target / MANIFEST_NAME).is_file():
                raise DataError(f"{target}: a non-empty directory that is not a tfface index; refusing to replace it")
        if self._dead_in_searcher:
            self.rebuild(progress=progress)
        elif self._count != self._rows:  # tombstones only in the tail: drop them
            keep = np.flatnonzero(self._live)
            tail_rows = keep[keep >= self._base.shape[0]]
            self._tail = self._gather(tail_rows)
            self._tail_n = int(tail_rows.size)
            self._ids = self._ids[keep]
            self._live = np.ones(keep.size, bool)
            self._row_of = None
        with atomic_dir(target) as tmp:
            vec = np.lib.format.open_memmap(tmp / "vectors.npy", mode="w+", dtype=np.float32, shape=(self._rows, self._dim))
            offset = 0
            for block in self._blocks(0, self._rows):
                for sl in _chunks(block.shape[0]):
                    vec[offset + sl.start : offset + sl.stop] = block[sl]
                offset += block.shape[0]
            vec.flush()
            del vec
            np.save(tmp / "ids.npy", self._ids, allow_pickle=False)
            searcher_bytes = None
            if self._searcher is not None:
                sdir = tmp / "scann"
                sdir.mkdir()
                self._searcher.serialize(str(sdir), True)
                if any(p.suffix == ".pkl" for p in sdir.iterdir()):  # pragma: no cover - we never pass docids
                    raise DataError(f"{sdir}: ScaNN wrote a pickle file; refusing to save it")
                searcher_bytes = sum(p.stat().st_size for p in sdir.rglob("*") if p.is_file())
            write_manifest(
                tmp,
                {
                    "dim": self._dim,
                    "metric": self._metric,
                    "backend": self._backend,
                    "count": self._count,
                    "searcher_rows": self._searcher_rows,
                    "id_kind": self._id_kind,
                    "id_dtype": self._ids.dtype.str,
                    "vector_dtype": "float32",
                    "config": self._searcher_config.to_dict() if self._searcher_config else None,
                    "config_overrides": self._overrides,
                    "config_fixed": self._fixed_config is not None,
                    "rebuild_fraction": self.rebuild_fraction,
                    "scann_version": scann_version() if self._searcher is not None else None,
                    "searcher_bytes": searcher_bytes,
                },
            )
        return target

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        verify: bool = True,
        mmap: bool = True,
        backend: str | None = None,
    ) -> Index:
        """Read an index directory written by :meth:`save`.

        Args:
            verify: check every file's SHA-256 against the manifest (sizes are always checked).
            mmap: memory-map ``vectors.npy`` instead of reading it into memory.
            backend: override the saved backend (e.g. ``"exact"`` where ScaNN is not installed).

        Raises:
            DataError: missing, partial or damaged directory (naming the file), or inconsistent arrays.
            IncompatibleIndexError: a directory written with another index format version.
        """
        root = Path(path)
        man = read_manifest(root)
        verify_files(root, man, checksums=verify)
        where = root / MANIFEST_NAME
        try:
            dim, count = int(man["dim"]), int(man["count"])
            s_rows = int(man.get("searcher_rows", 0))
        except (TypeError, ValueError) as err:
            raise DataError(f"{where}: dim/count/searcher_rows must be integers ({err})") from err
        saved_backend = man["backend"]
        try:
            overrides = man.get("config_overrides") or {}
            fixed = ScannConfig.from_dict(man["config"]) if man.get("config_fixed") and man.get("config") else None
            index = cls(
                dim,
                metric=man["metric"],
                backend=backend or saved_backend,
                config=fixed if fixed is not None else overrides,
                rebuild_fraction=float(man.get("rebuild_fraction", 0.1)),
            )
        except ConfigError as err:
            raise DataError(f"{where}: invalid index settings ({err})") from err
        vectors = _load_npy(root / "vectors.npy", mmap)
        ids = _load_npy(root / "ids.npy", False)
        if vectors.dtype != np.float32 or vectors.shape != (count, dim):
            raise DataError(
                f"{root / 'vectors.npy'}: expected float32 of shape {(count, dim)}, got {vectors.dtype} {vectors.shape}"
            )
        if ids.shape != (count,) or ids.dtype.kind not in "iU":
            raise DataError(f"{root / 'ids.npy'}: expected {count} int64 or string ids, got {ids.dtype} {ids.shape}")
        if not 0 <= s_rows <= count:
            raise DataError(f"{where}: searcher_rows {s_rows} outside [0, {count}]")
        index._base, index._ids = vectors, ids
        index._live = np.ones(count, bool)
        index._count = count
        index._id_kind = man.get("id_kind") or ("str" if ids.dtype.kind == "U" else "int" if count else None)
        if index._backend == "scann" and saved_backend == "scann" and s_rows and man.get("config"):
            try:
                cfg = ScannConfig.from_dict(man["config"])
            except ConfigError as err:
                raise DataError(f"{where}: invalid ScaNN config ({err})") from err
            sdir = root / "scann"
            if man.get("scann_version") != scann_version():
                warnings.warn(
                    f"{root}: searcher written by ScaNN {man.get('scann_version')}, this is ScaNN {scann_version()}; "
                    "it will be rebuilt from vectors.npy at the first search",
                    stacklevel=2,
                )
            elif not (sdir / "scann_assets.pbtxt").is_file():
                raise DataError(f"{sdir / 'scann_assets.pbtxt'}: missing (partial index directory)")
            else:
                sp = scann_pybind()
                try:
                    raw = sp.scann_pybind.ScannNumpy(str(sdir), (sdir / "scann_assets.pbtxt").read_text())
                except Exception as err:
                    raise DataError(f"{sdir}: ScaNN could not load the searcher ({err})") from err
                index._searcher = sp.ScannSearcher(raw)  # no docids: ScaNN's docid file would be a pickle
                if cfg.search_threads:
                    index._searcher.set_num_threads(cfg.search_threads)
                index._searcher_rows, index._searcher_config = s_rows, cfg
        return index

    def info(self) -> dict[str, Any]:
        """A plain summary: dimension, metric, backend, count, pending changes, searcher config."""
        return {
            "dim": self._dim,
            "metric": self._metric,
            "backend": self._backend,
            "count": self._count,
            "id_kind": self._id_kind,
            "pending": self.pending,
            "config": self._searcher_config.to_dict() if self._searcher_config else None,
            "config_overrides": self._overrides,
        }


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: cannot read the array ({err})") from err
