"""1:N closed-set identification: rank-k accuracy and CMC, and the MegaFace/FaceScrub protocol.

Scores are cosine similarities of L2-normalised features. The rank of a search is entry-level and
pessimistic about ties::

    rank = 1 + #{non-mated database entries e : s(probe, e) >= max over mates m of s(probe, m)}

where the database is the gallery followed by the distractors (which have no identity). With one
gallery entry per identity this is the usual identity-level CMC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tfface.errors import ConfigError, DataError
from tfface.eval.pairs import check_features, check_labels, check_ranks, check_same_dim, l2_normalize

__all__ = [
    "IdentificationResult",
    "SearchFn",
    "exact_search",
    "identify",
    "megaface_identification",
]

SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
"""``search(queries [Q, D], k) -> (scores [Q, k], indices [Q, k])``, best first, over the database."""


@dataclass
class IdentificationResult:
    """The outcome of :func:`identify` or :func:`megaface_identification`.

    Attributes:
        rank_accuracy: ``{k: fraction of searches with rank <= k}`` for the requested ranks.
        cmc: ``[max(ranks)]`` cumulative match characteristic, ``cmc[k - 1] = P(rank <= k)``.
        num_searches: number of searches (probes; MegaFace: (probe, gallery image) pairs).
        gallery_size: gallery entries per search (without distractors).
        num_distractors: distractor entries per search.
        protocol: ``"closed-set"`` or ``"megaface"``.
        search_ranks: ``[num_searches]`` rank of each search (``inf`` when the mate is not among the
            entries a ``search`` callable returned); ``None`` for MegaFace.
    """

    rank_accuracy: dict[int, float]
    cmc: np.ndarray
    num_searches: int
    gallery_size: int
    num_distractors: int
    protocol: str = "closed-set"
    search_ranks: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python summary (without the per-search ranks)."""
        return {
            "protocol": self.protocol,
            "rank_accuracy": {str(k): float(v) for k, v in self.rank_accuracy.items()},
            "cmc": [float(c) for c in self.cmc],
            "num_searches": int(self.num_searches),
            "gallery_size": int(self.gallery_size),
            "num_distractors": int(self.num_distractors),
        }


def _check_chunk(chunk: int) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, int | np.integer) or chunk < 1:
        raise ConfigError(f"chunk: expected a positive integer, got {chunk!r}")
    return int(chunk)


def _blocks(n: int, chunk: int) -> list[slice]:
    return [slice(i, min(i + chunk, n)) for i in range(0, n, chunk)]


def _topk_desc(
    queries: np.ndarray, database: np.ndarray, k: int, chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of each query over ``database``, best first; memory O(chunk^2)."""
    q_n, n = queries.shape[0], database.shape[0]
    k = min(k, n)
    out_s = np.empty((q_n, k), dtype=np.result_type(queries, database))
    out_i = np.empty((q_n, k), dtype=np.int64)
    for qs in _blocks(q_n, chunk):
        best_s = np.empty((qs.stop - qs.start, 0), dtype=out_s.dtype)
        best_i = np.empty((qs.stop - qs.start, 0), dtype=np.int64)
        for bs in _blocks(n, chunk):
            s = np.concatenate([best_s, queries[qs] @ database[bs].T], axis=1)
            i = np.concatenate(
                [best_i, np.broadcast_to(np.arange(bs.start, bs.stop), (s.shape[0], bs.stop - bs.start))], 1
            )
            if s.shape[1] > k:
                part = np.argpartition(-s, k - 1, axis=1)[:, :k]
                s, i = np.take_along_axis(s, part, 1), np.take_along_axis(i, part, 1)
            best_s, best_i = s, i
        order = np.argsort(-best_s, axis=1, kind="stable")
        out_s[qs] = np.take_along_axis(best_s, order, 1)
        out_i[qs] = np.take_along_axis(best_i, order, 1)
    return out_s, out_i


def exact_search(database: ArrayLike, chunk: int = 4096) -> SearchFn:
    """A brute-force cosine ``search`` over ``database`` rows (normalised inside), the reference
    that an approximate index (ScaNN) replaces. Returns scores and row indices, best first."""
    db = l2_normalize(check_features(database, "database"), "database")
    chunk = _check_chunk(chunk)

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = l2_normalize(check_features(queries, "queries"), "queries")
        check_same_dim(db, "database", q, "queries")
        return _topk_desc(q, db, int(k), chunk)

    return search


def encode_labels(probe_labels: np.ndarray, gallery_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer identities: gallery ids in ``0..C-1``; probe ids the same, or ``-1`` if not in the gallery."""
    try:
        classes, gallery_ids = np.unique(gallery_labels, return_inverse=True)
        pos = np.clip(np.searchsorted(classes, probe_labels), 0, classes.size - 1)
        probe_ids = np.where(classes[pos] == probe_labels, pos, -1)
    except TypeError as err:
        raise DataError(
            f"probe_labels: dtype {probe_labels.dtype} cannot be compared with gallery_labels dtype "
            f"{gallery_labels.dtype} ({err})"
        ) from err
    return probe_ids.astype(np.int64), gallery_ids.astype(np.int64)


def best_mate_scores(
    probe: np.ndarray, probe_ids: np.ndarray, gallery: np.ndarray, gallery_ids: np.ndarray
) -> np.ndarray:
    """``[Q]`` highest score between each probe and the gallery entries of its identity (``-inf`` if none)."""
    best = np.full(probe.shape[0], -np.inf, dtype=np.result_type(probe, gallery))
    g_order = np.argsort(gallery_ids, kind="stable")
    g_bounds = np.searchsorted(gallery_ids[g_order], np.arange(gallery_ids.max() + 2))
    mated = np.flatnonzero(probe_ids >= 0)
    p_order = mated[np.argsort(probe_ids[mated], kind="stable")]
    ids_sorted = probe_ids[p_order]
    starts = np.flatnonzero(np.r_[True, np.diff(ids_sorted) != 0])
    for a, b in zip(starts, np.r_[starts[1:], ids_sorted.size], strict=True):
        c = ids_sorted[a]
        mates = gallery[g_order[g_bounds[c] : g_bounds[c + 1]]]
        rows = p_order[a:b]
        best[rows] = (probe[rows] @ mates.T).max(axis=1)
    return best


def search_statistics(
    probe: np.ndarray,
    probe_ids: np.ndarray,
    gallery: np.ndarray,
    gallery_ids: np.ndarray,
    distractors: np.ndarray | None,
    chunk: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact, chunked statistics of each search over gallery + distractors (normalised inputs).

    Returns ``(best_mate [Q], rank [Q], top_nonmate [Q])``: the best mated score (``-inf`` when the
    probe has no mate), ``1 + #non-mated entries scoring >= best_mate``, and the highest non-mated
    score. Memory is bounded by ``chunk x chunk`` scores.
    """
    best = best_mate_scores(probe, probe_ids, gallery, gallery_ids)
    count = np.zeros(probe.shape[0], dtype=np.int64)
    top_nm = np.full(probe.shape[0], -np.inf)
    dbs: list[tuple[np.ndarray, np.ndarray | None]] = [(gallery, gallery_ids)]
    if distractors is not None and distractors.shape[0]:
        dbs.append((distractors, None))
    for qs in _blocks(probe.shape[0], chunk):
        for db, ids in dbs:
            for bs in _blocks(db.shape[0], chunk):
                s = probe[qs] @ db[bs].T
                if ids is not None:
                    s[ids[None, bs] == probe_ids[qs, None]] = -np.inf  # mates are not competitors
                count[qs] += np.count_nonzero(s >= best[qs, None], axis=1)
                top_nm[qs] = np.maximum(top_nm[qs], s.max(axis=1))
    return best, 1 + count, top_nm


def _ranks_from_search(
    scores: np.ndarray, indices: np.ndarray, probe_ids: np.ndarray, db_ids: np.ndarray, k: int
) -> np.ndarray:
    q_n = probe_ids.shape[0]
    scores = np.asarray(scores)
    indices = np.asarray(indices)
    if scores.shape != (q_n, k) or indices.shape != (q_n, k):
        raise DataError(
            f"search: expected scores and indices of shape {(q_n, k)}, got {scores.shape} and {indices.shape}"
        )
    if indices.dtype.kind not in "iu" or (indices < 0).any() or (indices >= db_ids.shape[0]).any():
        raise DataError(
            f"search: indices must be integers in [0, {db_ids.shape[0]}) (shape {indices.shape}, dtype {indices.dtype})"
        )
    if scores.dtype.kind not in "iuf" or not np.isfinite(scores).all():
        raise DataError(f"search: scores contain NaN or Inf (shape {scores.shape})")
    mated = db_ids[indices] == probe_ids[:, None]
    best = np.where(mated, scores, -np.inf).max(axis=1)
    count = np.count_nonzero(~mated & (scores >= best[:, None]), axis=1)
    return np.where(mated.any(axis=1), 1 + count, np.inf)


def _cmc(ranks: np.ndarray, max_rank: int) -> np.ndarray:
    return np.array([np.mean(ranks <= r) for r in range(1, max_rank + 1)])


def identify(
    probe: ArrayLike,
    probe_labels: ArrayLike,
    gallery: ArrayLike,
    gallery_labels: ArrayLike,
    distractors: ArrayLike | None = None,
    ranks: Sequence[int] = (1, 5, 10),
    search: SearchFn | None = None,
    chunk: int = 4096,
) -> IdentificationResult:
    """Closed-set 1:N identification: rank-k accuracy and the CMC curve.

    Args:
        probe, probe_labels: ``[Q, D]`` query features and their identities; every identity must be
            in the gallery.
        gallery, gallery_labels: ``[G, D]`` enrolled features and identities (several per identity allowed).
        distractors: optional ``[M, D]`` extra database entries of no probe's identity (MegaFace-style).
        ranks: the ``k`` of the reported rank-k accuracies; the CMC runs to ``max(ranks)``.
        search: optional ``search(queries, k) -> (scores, indices)`` over the L2-normalised
            ``np.concatenate([gallery, distractors])`` (that row order), e.g. a ScaNN index or
            :func:`exact_search`; it is called once with all normalised probes and ``k = min(max(ranks), G + M)``.
            Default: exact chunked matrix products, whose ranks are exact at any depth.
        chunk: block size of the default search; memory is about ``chunk^2`` scores.
    """
    q = check_features(probe, "probe")
    g = check_features(gallery, "gallery")
    check_same_dim(q, "probe", g, "gallery")
    d = None
    if distractors is not None:
        d = check_features(distractors, "distractors", allow_empty=True)
        check_same_dim(g, "gallery", d, "distractors")
    ql = check_labels(probe_labels, "probe_labels", q.shape[0], "probe")
    gl = check_labels(gallery_labels, "gallery_labels", g.shape[0], "gallery")
    rank_list = check_ranks(ranks, "ranks")
    chunk = _check_chunk(chunk)
    q_ids, g_ids = encode_labels(ql, gl)
    missing = q_ids < 0
    if missing.any():
        raise DataError(
            f"probe_labels: {int(missing.sum())} of the {q_ids.size} probes (shape {ql.shape}) have no identity in "
            f"gallery_labels (shape {gl.shape}) "
            f"(first: {ql[missing][:5].tolist()}); use tpir_at_fpir for open-set search"
        )
    q = l2_normalize(q, "probe")
    g = l2_normalize(g, "gallery")
    n_d = 0 if d is None else d.shape[0]
    if n_d:
        d = l2_normalize(d, "distractors")
    max_rank = rank_list[-1]
    if search is None:
        _, search_ranks, _ = search_statistics(q, q_ids, g, g_ids, d, chunk)
        search_ranks = search_ranks.astype(np.float64)
    else:
        if not callable(search):
            raise ConfigError(f"search: expected a callable search(queries, k), got {type(search).__name__}")
        k = min(max_rank, g.shape[0] + n_d)
        db_ids = np.concatenate([g_ids, np.full(n_d, -1, dtype=np.int64)])
        scores, indices = search(q, k)
        search_ranks = _ranks_from_search(scores, indices, q_ids, db_ids, k)
    cmc = _cmc(search_ranks, max_rank)
    return IdentificationResult(
        rank_accuracy={r: float(cmc[r - 1]) for r in rank_list},
        cmc=cmc,
        num_searches=int(q.shape[0]),
        gallery_size=int(g.shape[0]),
        num_distractors=int(n_d),
        protocol="closed-set",
        search_ranks=search_ranks,
    )


def megaface_identification(
    features: ArrayLike,
    labels: ArrayLike,
    distractors: ArrayLike,
    ranks: Sequence[int] = (1,),
    chunk: int = 4096,
) -> IdentificationResult:
    """The MegaFace challenge 1 / FaceScrub identification protocol.

    For each identity with ``n >= 2`` images, each image ``g`` in turn is the only gallery entry of
    that identity and each of the other ``n - 1`` images ``p`` is a probe, searched against
    ``{g} + distractors`` (other identities' images are not in the gallery). A search is a hit at rank
    ``k`` when fewer than ``k`` distractors score ``>= s(p, g)``, i.e. ``s(p, g) > t_k(p)`` with
    ``t_k(p)`` the ``k``-th highest distractor score of ``p``. The accuracy averages over all
    ``sum_i n_i (n_i - 1)`` (probe, gallery) pairs. Distractor scores are computed once per image (top
    ``max(ranks)`` kept), not once per pair. Identities with a single image are skipped.
    """
    x = check_features(features, "features")
    d = check_features(distractors, "distractors")
    check_same_dim(x, "features", d, "distractors")
    lab = check_labels(labels, "labels", x.shape[0], "features")
    rank_list = check_ranks(ranks, "ranks")
    chunk = _check_chunk(chunk)
    _, ids = np.unique(lab, return_inverse=True)
    counts = np.bincount(ids)
    if counts.max() < 2:
        raise DataError(
            f"labels: no identity has two images (shape {lab.shape}); MegaFace needs probes and a gallery image"
        )
    x = l2_normalize(x, "features")
    d = l2_normalize(d, "distractors")
    max_rank = rank_list[-1]
    keep = np.flatnonzero(counts[ids] >= 2)
    keep = keep[np.argsort(ids[keep], kind="stable")]  # grouped by identity
    top, _ = _topk_desc(x[keep], d, max_rank, chunk)
    t = np.full((keep.size, max_rank), -np.inf)
    t[:, : top.shape[1]] = top  # fewer than k distractors: rank k is always reached

    hits = np.zeros(max_rank, dtype=np.int64)
    n_pairs = 0
    bounds = np.flatnonzero(np.r_[True, np.diff(ids[keep]) != 0, True])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        xs = x[keep[a:b]]
        s = xs @ xs.T  # s[p, g]
        off_diag = ~np.eye(b - a, dtype=bool)
        hit = s[:, :, None] > t[a:b, None, :]  # [probe, gallery, k]
        hits += hit[off_diag].sum(axis=0)
        n_pairs += int(off_diag.sum())
    cmc = hits / n_pairs
    return IdentificationResult(
        rank_accuracy={r: float(cmc[r - 1]) for r in rank_list},
        cmc=cmc,
        num_searches=n_pairs,
        gallery_size=1,
        num_distractors=int(d.shape[0]),
        protocol="megaface",
        search_ranks=None,
    )
