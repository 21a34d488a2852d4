"""Identification at scale: :func:`tfface.eval.identification.identify` on top of an :class:`Index`.

``identify(..., search=fn)`` calls ``fn(queries, k)`` once with the L2-normalised probes and expects
``(scores [Q, k], indices [Q, k])`` over the normalised ``concatenate([gallery, distractors])`` in that
row order. :func:`index_search_fn` turns an index whose ids are those row numbers into such a
callable; :func:`identify_with_index` builds that index (ScaNN configured by size) and runs the
protocol twice, approximately and exactly, so a rank-1 accuracy with a million distractors is both
fast and checked.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tfface.errors import ConfigError, DataError
from tfface.eval.identification import IdentificationResult, SearchFn, identify
from tfface.eval.pairs import check_features, check_same_dim
from tfface.retrieval.index import Index
from tfface.retrieval.scann_config import ScannConfig

__all__ = ["IndexedIdentification", "identify_with_index", "index_search_fn"]


def index_search_fn(index: Index, *, exact: bool = False, rescore: bool = True, **search_kwargs: Any) -> SearchFn:
    """A ``search(queries, k) -> (scores, indices)`` callable over ``index`` for ``identify``.

    The index's ids must be the row numbers ``0..len-1`` of the database ``identify`` describes
    (gallery rows, then distractor rows). ``rescore`` (default) returns exact float32 scores of the
    entries found, so ranks are not perturbed by an int8 rescoring stage; ``exact`` searches exactly.
    Other keyword arguments go to :meth:`Index.search` (e.g. ``leaves_to_search``).
    """
    if not isinstance(index, Index):
        raise ConfigError(f"index: expected a tfface.retrieval.Index, got {type(index).__name__}")
    ids = index.ids
    if index.id_kind != "int" or not np.array_equal(np.sort(ids), np.arange(len(index))):
        raise ConfigError(
            "index: its ids must be the row numbers 0..N-1 of concatenate([gallery, distractors]) "
            f"(got {index.id_kind} ids, {len(index)} entries)"
        )

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        res = index.search(queries, int(k), exact=exact, rescore=rescore, **search_kwargs)
        if (res.ids < 0).any():
            rows = int((res.ids < 0).any(axis=1).sum())
            raise DataError(
                f"index search: {rows} of {res.ids.shape[0]} queries got fewer than k={k} neighbours; "
                "search more leaves (leaves_to_search) or use exact=True"
            )
        return res.scores.astype(np.float64), res.ids

    return search


@dataclass
class IndexedIdentification:
    """Closed-set identification computed with ScaNN and exactly over the same index.

    Attributes:
        approximate: the result with the ScaNN search.
        exact: the result with the exact (TensorFlow) search, or ``None`` if not requested.
        rank_agreement: fraction of searches whose rank (capped at ``max(ranks) + 1``) is the same in both.
        build_seconds, approximate_seconds, exact_seconds: wall-clock times.
        config: the ScaNN configuration used.
        database_size: gallery + distractor entries.
    """

    approximate: IdentificationResult
    exact: IdentificationResult | None
    rank_agreement: float | None
    build_seconds: float
    approximate_seconds: float
    exact_seconds: float | None
    config: dict[str, Any] | None
    database_size: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python summary."""
        return {
            "approximate": self.approximate.to_dict(),
            "exact": self.exact.to_dict() if self.exact is not None else None,
            "rank_agreement": self.rank_agreement,
            "build_seconds": round(self.build_seconds, 3),
            "approximate_seconds": round(self.approximate_seconds, 3),
            "exact_seconds": None if self.exact_seconds is None else round(self.exact_seconds, 3),
            "config": self.config,
            "database_size": self.database_size,
            **self.extra,
        }


def identify_with_index(
    probe: ArrayLike,
    probe_labels: ArrayLike,
    gallery: ArrayLike,
    gallery_labels: ArrayLike,
    distractors: ArrayLike | None = None,
    ranks: Sequence[int] = (1, 5, 10),
    *,
    config: dict[str, Any] | ScannConfig | None = None,
    check_exact: bool = True,
    rescore: bool = True,
    progress: bool = False,
    **search_kwargs: Any,
) -> IndexedIdentification:
    """Closed-set (MegaFace-style with ``distractors``) identification through a ScaNN :class:`Index`.

    Builds an index over the normalised ``concatenate([gallery, distractors])`` with ids ``0..N-1``
    (configuration by size unless ``config`` overrides it), runs
    :func:`~tfface.eval.identification.identify` with its ScaNN search and, if ``check_exact``, with
    its exact search, and reports both and how often their ranks agree.
    """
    g = check_features(gallery, "gallery")
    parts = [g]
    if distractors is not None:
        d = check_features(distractors, "distractors", allow_empty=True)
        check_same_dim(g, "gallery", d, "distractors")
        if d.shape[0]:
            parts.append(d)
    database = np.concatenate([p.astype(np.float32, copy=False) for p in parts]) if len(parts) > 1 else g
    t0 = time.perf_counter()
    index = Index.build(database, np.arange(database.shape[0]), config=config, progress=progress)
    build_s = time.perf_counter() - t0
    del database
    common = dict(probe=probe, probe_labels=probe_labels, gallery=gallery, gallery_labels=gallery_labels,
                  distractors=distractors, ranks=ranks)
    t0 = time.perf_counter()
    approx = identify(**common, search=index_search_fn(index, rescore=rescore, **search_kwargs))
    approx_s = time.perf_counter() - t0
    exact = agreement = exact_s = None
    if check_exact:
        t0 = time.perf_counter()
        exact = identify(**common, search=index_search_fn(index, exact=True))
        exact_s = time.perf_counter() - t0
        cap = float(max(exact.cmc.shape[0], 1) + 1)
        a = np.minimum(approx.search_ranks, cap)
        b = np.minimum(exact.search_ranks, cap)
        agreement = float(np.mean(a == b))
    return IndexedIdentification(
        approximate=approx,
        exact=exact,
        rank_agreement=agreement,
        build_seconds=build_s,
        approximate_seconds=approx_s,
        exact_seconds=exact_s,
        config=index.config.to_dict() if index.config else None,
        database_size=len(index),
    )
