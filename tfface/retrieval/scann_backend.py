"""The ScaNN searcher of an :class:`~tfface.retrieval.index.Index`: build, search past tombstones, serialize, load.

A :class:`ScannBackend` covers the rows ``[0, rows)`` of the index's row store as they were at the last
build. Entries replaced or deleted since stay in the searcher; :meth:`ScannBackend.search_live`
over-fetches past them (and re-fetches deeper for the queries where too many tombstones came back), so
it always returns the ``k`` best *live* entries it can find. ScaNN's configuration rules live in
:mod:`tfface.retrieval.scann_config`.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfface.errors import DataError
from tfface.retrieval.scann_config import ScannConfig, build_searcher, scann_pybind

__all__ = ["ScannBackend"]


class ScannBackend:
    """A ScaNN searcher (or none yet) over the first :attr:`rows` rows, with its tombstone count."""

    def __init__(self, searcher=None, rows: int = 0, config: ScannConfig | None = None) -> None:
        self.searcher = searcher
        self.rows = int(rows)  # the searcher covers rows [0, rows)
        self.config = config
        self.dead = 0  # tombstoned rows inside [0, rows)

    @classmethod
    def build(cls, base: np.ndarray, cfg: ScannConfig) -> ScannBackend:
        """A searcher over all of ``base`` (``[n, D]`` float32, normalised as the index stores it)."""
        return cls(build_searcher(base, cfg), int(base.shape[0]), cfg)

    @classmethod
    def load(cls, sdir: Path, rows: int, cfg: ScannConfig) -> ScannBackend:
        """The searcher serialized in ``sdir`` (no docids: ScaNN's docid file would be a pickle)."""
        if not (sdir / "scann_assets.pbtxt").is_file():
            raise DataError(f"{sdir / 'scann_assets.pbtxt'}: missing (partial index directory)")
        sp = scann_pybind()
        try:
            raw = sp.scann_pybind.ScannNumpy(str(sdir), (sdir / "scann_assets.pbtxt").read_text())
        except Exception as err:
            raise DataError(f"{sdir}: ScaNN could not load the searcher ({err})") from err
        searcher = sp.ScannSearcher(raw)
        if cfg.search_threads:
            searcher.set_num_threads(cfg.search_threads)
        return cls(searcher, rows, cfg)

    @property
    def built(self) -> bool:
        return self.searcher is not None

    @property
    def live_rows(self) -> int:
        return self.rows - self.dead

    def tombstone(self, rows: Sequence[int]) -> None:
        """Count the rows of ``rows`` that lie inside the searcher."""
        self.dead += sum(1 for r in rows if r < self.rows)

    def serialize(self, sdir: Path) -> int:
        """Write the searcher into the new directory ``sdir`` (refusing pickles); return its bytes."""
        sdir.mkdir()
        self.searcher.serialize(str(sdir), True)
        if any(p.suffix == ".pkl" for p in sdir.iterdir()):  # pragma: no cover - we never pass docids
            raise DataError(f"{sdir}: ScaNN wrote a pickle file; refusing to save it")
        return sum(p.stat().st_size for p in sdir.rglob("*") if p.is_file())

    def serialized_bytes(self) -> int:
        """Size of the serialized searcher, measured by serializing it to a scratch directory."""
        tmp = Path(tempfile.mkdtemp(prefix="tfface-scann-size-"))
        try:
            self.searcher.serialize(str(tmp), True)
            return sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _raw(self, q: np.ndarray, fetch: int, leaves: int | None, pre: int | None):
        cfg = self.config
        kwargs: dict[str, int] = {"final_num_neighbors": int(fetch)}
        if cfg.mode != "brute_force":
            kwargs["pre_reorder_num_neighbors"] = int(max(pre or max(cfg.reorder_k, 2 * fetch), fetch))
        if cfg.mode == "tree_ah" and leaves is not None:
            kwargs["leaves_to_search"] = int(leaves)
        threads = cfg.search_threads or (os.cpu_count() or 1)
        if threads > 1 and q.shape[0] > 1:
            batch = int(min(256, max(8, math.ceil(q.shape[0] / (2 * threads)))))
            rows, scores = self.searcher.search_batched_parallel(q, batch_size=batch, **kwargs)
        else:
            rows, scores = self.searcher.search_batched(q, **kwargs)
        rows = np.asarray(rows, dtype=np.int64).reshape(q.shape[0], -1)
        scores = np.asarray(scores, dtype=np.float32).reshape(q.shape[0], -1)
        valid = np.isfinite(scores)  # ScaNN pads with NaN when it found fewer entries
        return np.where(valid, scores, -np.inf).astype(np.float32), np.where(valid, rows, -1), valid

    def search_live(
        self, q: np.ndarray, k: int, live: np.ndarray, leaves: int | None, pre: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` live entries (``live[row]``) from the searcher: over-fetch past tombstones, deeper where needed."""
        s_cap, dead = self.rows, self.dead
        live_n = s_cap - dead
        extra = 0 if dead == 0 else min(dead, max(2 * k, math.ceil(3 * k * dead / max(live_n, 1))))
        fetch = min(s_cap, k + extra)
        out_s = np.full((q.shape[0], k), -np.inf, np.float32)
        out_r = np.full((q.shape[0], k), -1, np.int64)
        todo = np.arange(q.shape[0])
        while todo.size:
            sc, rows, valid = self._raw(q[todo], fetch, leaves, pre)
            ok = valid & live[np.where(valid, rows, 0)]
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
