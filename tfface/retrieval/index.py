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

The pieces: ids (:mod:`~tfface.retrieval.ids`), the row store with its tombstones
(:mod:`~tfface.retrieval.rows`), the ScaNN searcher (:mod:`~tfface.retrieval.scann_backend`), and the
directory format (:mod:`~tfface.retrieval.persistence`, :mod:`~tfface.retrieval.manifest`).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tfface.atomic import atomic_dir, check_free_space
from tfface.errors import ConfigError, DataError
from tfface.retrieval.exact import exact_top_k
from tfface.retrieval.ids import auto_ids, check_ids, id_keys, ids_of_rows, kind_of
from tfface.retrieval.manifest import write_manifest
from tfface.retrieval.persistence import (
    check_save_target,
    npy_bytes,
    read_arrays,
    read_index_dir,
    write_arrays,
)
from tfface.retrieval.rows import RowStore, chunks, prepare_vectors, progress_bar
from tfface.retrieval.scann_backend import ScannBackend
from tfface.retrieval.scann_config import ScannConfig, choose_config, scann_version

__all__ = ["BACKENDS", "METRICS", "Index", "SearchResult"]

METRICS = ("cosine", "dot_product")
BACKENDS = ("scann", "exact")


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
        self._store = RowStore(self._dim)
        self._id_kind: str | None = None  # "int" or "str" once the first ids arrive
        self._scann = ScannBackend()  # not built yet

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
        return self._scann.config

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
        return (self._store.rows - self._scann.rows) + self._scann.dead

    @property
    def ids(self) -> np.ndarray:
        """Ids of the live entries, in storage order (a copy)."""
        return self._store.ids[self._store.live].copy()

    def vectors(self) -> np.ndarray:
        """``[len, D]`` stored (normalised) vectors of the live entries, in the order of :attr:`ids`."""
        return self._store.gather(np.flatnonzero(self._store.live))

    def get(self, ids: ArrayLike) -> np.ndarray:
        """``[len(ids), D]`` stored (normalised) vectors of the given ids; an unknown id is a ``DataError``."""
        idn = self._check_ids(ids, None, "ids")
        rowmap = self._store.rowmap()
        keys = id_keys(idn)
        missing = [k for k in keys if k not in rowmap]
        if missing:
            raise DataError(f"ids: {len(missing)} not in the index (first: {missing[0]!r})")
        return self._store.gather(np.array([rowmap[k] for k in keys], np.int64))

    def __len__(self) -> int:
        return self._store.count

    def __contains__(self, item: Any) -> bool:
        try:
            key = id_keys(self._check_ids([item], 1, "id"))[0]
        except DataError:
            return False
        return key in self._store.rowmap()

    def __repr__(self) -> str:
        mode = self._scann.config.mode if self._scann.config else None
        return (
            f"Index(dim={self._dim}, metric={self._metric!r}, backend={self._backend!r}, count={len(self)}, "
            f"mode={mode!r}, pending={self.pending})"
        )

    # ------------------------------------------------------------------ input checks
    def _prepare(self, x: ArrayLike, name: str, progress: bool = False) -> np.ndarray:
        return prepare_vectors(x, self._dim, self._metric, name, progress)

    def _check_ids(self, ids: ArrayLike, n: int | None, name: str = "ids") -> np.ndarray:
        return check_ids(ids, n, name, self._id_kind)

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
        idn = auto_ids(self._store.ids, self._id_kind, x.shape[0]) if ids is None else self._check_ids(ids, x.shape[0])
        if len(self):
            rowmap = self._store.rowmap()
            dup = [i for i in id_keys(idn) if i in rowmap]
            if dup:
                raise DataError(
                    f"ids: {len(dup)} already in the index (first: {dup[:10]}); use upsert to replace them"
                )
        self._id_kind = self._id_kind or kind_of(idn)
        self._store.append(x, idn)

    def upsert(self, vectors: ArrayLike, ids: ArrayLike, *, progress: bool = False) -> int:
        """Insert entries, replacing the vectors of ids already present. Returns how many were replaced."""
        x = self._prepare(vectors, "vectors", progress)
        idn = self._check_ids(ids, x.shape[0])
        rowmap = self._store.rowmap()
        old = [rowmap.pop(i) for i in id_keys(idn) if i in rowmap]
        self._kill(old)
        self._id_kind = self._id_kind or kind_of(idn)
        self._store.append(x, idn)
        return len(old)

    def delete(self, ids: ArrayLike) -> None:
        """Remove entries by id; an unknown id raises ``DataError`` and nothing changes."""
        idn = self._check_ids(ids, None)
        rowmap = self._store.rowmap()
        keys = id_keys(idn)
        missing = [i for i in keys if i not in rowmap]
        if missing:
            raise DataError(f"ids: {len(missing)} of {len(keys)} not in the index (first: {missing[:10]})")
        self._kill([rowmap.pop(i) for i in keys])

    def _kill(self, rows: list[int]) -> None:
        self._store.kill(rows)
        self._scann.tombstone(rows)

    def maybe_rebuild(self, progress: bool = False) -> bool:
        """Rebuild the ScaNN searcher if the pending changes exceed ``rebuild_fraction``; True if it did."""
        if self._backend != "scann" or len(self) == 0:
            return False
        if not self._scann.built or self.pending > self.rebuild_fraction * len(self):
            self.rebuild(progress=progress)
            return True
        return False

    def rebuild(self, progress: bool = False) -> None:
        """Drop tombstoned rows and (backend ``scann``) build the searcher over all live entries."""
        base = self._store.compact()
        self._scann = ScannBackend()
        if self._backend == "scann" and len(self):
            cfg = self._fixed_config or choose_config(len(self), self._dim, self._overrides)
            bar = progress_bar(range(1), progress, desc=f"building ScaNN {cfg.mode} over {len(self)} vectors")
            for _ in bar:
                self._scann = ScannBackend.build(base, cfg)

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
        if len(self) == 0:
            raise DataError("index is empty: add vectors before searching")
        q = self._prepare(queries, "queries")
        use_exact = exact or self._backend == "exact"
        if not use_exact:
            self.maybe_rebuild(progress=progress)
            cfg = self._scann.config
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
        k_eff = min(int(k), len(self))
        scores = np.empty((q.shape[0], k_eff), np.float32)
        rows = np.empty((q.shape[0], k_eff), np.int64)
        parts = chunks(q.shape[0], int(batch_size))
        for sl in progress_bar(parts, progress, desc="searching", unit="batch"):
            if use_exact:
                s, r = self._search_exact(q[sl], k_eff)
            else:
                s, r = self._search_scann(q[sl], k_eff, leaves_to_search, pre_reorder_num_neighbors)
            if rescore:
                s, r = self._rescore(q[sl], s, r)
            scores[sl], rows[sl] = s, r
        return SearchResult(ids=ids_of_rows(self._store.ids, rows), scores=scores)

    def _search_exact(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        store = self._store
        keep = None if store.count == store.rows else store.live
        return exact_top_k(q, store.blocks(0, store.rows), k, keep)

    def _search_scann(
        self, q: np.ndarray, k: int, leaves: int | None, pre: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The searcher's live results merged with an exact search of the unindexed tail."""
        store = self._store
        s_cap, rows_total = self._scann.rows, store.rows
        parts_s, parts_r = [], []
        live_in_searcher = self._scann.live_rows
        if live_in_searcher:
            ps, pr = self._scann.search_live(q, min(k, live_in_searcher), store.live, leaves, pre)
            parts_s.append(ps)
            parts_r.append(pr)
        if rows_total > s_cap:
            keep = store.live[s_cap:rows_total]
            n_keep = int(keep.sum())
            if n_keep:
                ts, tr = exact_top_k(q, store.blocks(s_cap, rows_total), min(k, n_keep), keep)
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

    def _rescore(self, q: np.ndarray, s: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = r >= 0
        vec = self._store.gather(np.where(valid, r, 0).ravel()).reshape(r.shape[0], r.shape[1], self._dim)
        exact = np.einsum("qd,qkd->qk", q, vec).astype(np.float32)
        exact[~valid] = -np.inf
        order = np.argsort(-exact, axis=1, kind="stable")
        return np.take_along_axis(exact, order, 1), np.take_along_axis(r, order, 1)

    # ------------------------------------------------------------------ size
    def index_bytes(self) -> int:
        """Bytes of the search structure, measured as the size of the serialized ScaNN searcher on disk
        (backend ``exact``: the float32 vectors). Pending tail rows count as float32."""
        tail = (self._store.rows - self._scann.rows) * self._dim * 4
        if self._backend == "exact" or not self._scann.built:
            return self._store.rows * self._dim * 4
        return self._scann.serialized_bytes() + tail

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, *, progress: bool = False) -> Path:
        """Write the index to the directory ``path`` atomically (see the module docstring).

        An existing index directory at ``path`` is replaced only once the new one is complete; a
        directory that is not a tfface index is never replaced. Tombstones inside the searcher cause a
        rebuild first, so deleted embeddings leave the disk. The arrays' size is checked against the
        free disk space first (:class:`~tfface.atomic.InsufficientSpaceError`, an ``OSError``); on any
        failure the temporary directory is removed and ``path`` is left as it was.
        """
        target = check_save_target(path)
        store = self._store
        if self._scann.dead:
            self.rebuild(progress=progress)
        elif store.count != store.rows:  # tombstones only in the tail: drop them
            store.drop_dead_tail()
        n = store.rows
        check_free_space(target, npy_bytes((n, self._dim), np.float32) + npy_bytes(store.ids.shape, store.ids.dtype))
        with atomic_dir(target) as tmp:
            write_arrays(tmp, store.blocks(0, n), n, self._dim, store.ids)
            searcher_bytes = self._scann.serialize(tmp / "scann") if self._scann.built else None
            write_manifest(
                tmp,
                {
                    "dim": self._dim,
                    "metric": self._metric,
                    "backend": self._backend,
                    "count": len(self),
                    "searcher_rows": self._scann.rows,
                    "id_kind": self._id_kind,
                    "id_dtype": store.ids.dtype.str,
                    "vector_dtype": "float32",
                    "config": self._scann.config.to_dict() if self._scann.config else None,
                    "config_overrides": self._overrides,
                    "config_fixed": self._fixed_config is not None,
                    "rebuild_fraction": self.rebuild_fraction,
                    "scann_version": scann_version() if self._scann.built else None,
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
        saved = read_index_dir(path, verify=verify)
        root, man, where = saved.root, saved.manifest, saved.manifest_path
        saved_backend = man["backend"]
        try:
            overrides = man.get("config_overrides") or {}
            fixed = ScannConfig.from_dict(man["config"]) if man.get("config_fixed") and man.get("config") else None
            index = cls(
                saved.dim,
                metric=man["metric"],
                backend=backend or saved_backend,
                config=fixed if fixed is not None else overrides,
                rebuild_fraction=float(man.get("rebuild_fraction", 0.1)),
            )
        except ConfigError as err:
            raise DataError(f"{where}: invalid index settings ({err})") from err
        read_arrays(saved, mmap)
        count, ids = saved.count, saved.ids
        index._store = RowStore.from_arrays(saved.vectors, ids)
        index._id_kind = man.get("id_kind") or ("str" if ids.dtype.kind == "U" else "int" if count else None)
        s_rows = saved.searcher_rows
        if index._backend == "scann" and saved_backend == "scann" and s_rows and man.get("config"):
            try:
                cfg = ScannConfig.from_dict(man["config"])
            except ConfigError as err:
                raise DataError(f"{where}: invalid ScaNN config ({err})") from err
            if man.get("scann_version") != scann_version():
                warnings.warn(
                    f"{root}: searcher written by ScaNN {man.get('scann_version')}, this is ScaNN {scann_version()}; "
                    "it will be rebuilt from vectors.npy at the first search",
                    stacklevel=2,
                )
            else:
                index._scann = ScannBackend.load(root / "scann", s_rows, cfg)
        return index

    def info(self) -> dict[str, Any]:
        """A plain summary: dimension, metric, backend, count, pending changes, searcher config."""
        return {
            "dim": self._dim,
            "metric": self._metric,
            "backend": self._backend,
            "count": len(self),
            "id_kind": self._id_kind,
            "pending": self.pending,
            "config": self._scann.config.to_dict() if self._scann.config else None,
            "config_overrides": self._overrides,
        }
