"""1:N open-set identification: TPIR at FPIR (NIST FRVT 1:N / IJB-C convention).

Probes whose identity is enrolled in the gallery are mated searches; the others are non-mated
searches. For a threshold ``T``::

    FPIR(T) = #{non-mated searches whose top score s_top > T} / #non-mated
    TPIR(T) = #{mated searches with the mate at rank <= R and mate score > T} / #mated

(NIST's FNIR(N, R, T) = 1 - TPIR.) For each FPIR target the threshold is the lowest one meeting it:
with ``a = floor(FPIR_target * #non-mated)`` allowed false alarms, ``T`` is the ``(a + 1)``-th highest
non-mated top score. A target below ``1 / #non-mated`` cannot be measured and gives ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tfface.errors import ConfigError, DataError
from tfface.eval.identification import encode_labels, search_statistics
from tfface.eval.pairs import check_features, check_labels, check_same_dim, l2_normalize

__all__ = ["OpenSetResult", "tpir_at_fpir"]


@dataclass
class OpenSetResult:
    """The outcome of :func:`tpir_at_fpir`.

    Attributes:
        tpir: ``{FPIR target: TPIR or None}``.
        thresholds: ``{FPIR target: score threshold T or None}``.
        fpir: ``{FPIR target: FPIR actually reached at T or None}`` (``<=`` the target).
        rank: the rank ``R`` a mate must reach.
        rank_accuracy: fraction of mated searches with the mate at rank <= R (TPIR at ``T = -inf``).
        num_mated, num_nonmated: numbers of mated and non-mated searches.
        gallery_size: gallery entries.
    """

    tpir: dict[float, float | None]
    thresholds: dict[float, float | None]
    fpir: dict[float, float | None]
    rank: int
    rank_accuracy: float
    num_mated: int
    num_nonmated: int
    gallery_size: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-python summary; FPIR targets become string keys (``"0.01"``)."""

        def keyed(d: dict[float, float | None]) -> dict[str, float | None]:
            return {f"{k:g}": v for k, v in d.items()}

        return {
            "tpir": keyed(self.tpir),
            "thresholds": keyed(self.thresholds),
            "fpir": keyed(self.fpir),
            "rank": int(self.rank),
            "rank_accuracy": float(self.rank_accuracy),
            "num_mated": int(self.num_mated),
            "num_nonmated": int(self.num_nonmated),
            "gallery_size": int(self.gallery_size),
        }


def tpir_at_fpir(
    probe: ArrayLike,
    probe_labels: ArrayLike,
    gallery: ArrayLike,
    gallery_labels: ArrayLike,
    fpir_targets: Sequence[float] = (0.01, 0.1),
    rank: int = 1,
    chunk: int = 4096,
) -> OpenSetResult:
    """TPIR at each FPIR target for an open-set search of ``probe`` against ``gallery``.

    Cosine scores on L2-normalised features; probes whose label is not in ``gallery_labels`` are the
    non-mated searches. There must be at least one mated and one non-mated search. IJB-C reports the
    mean over its two galleries G1 and G2: call this once per gallery.
    """
    q = check_features(probe, "probe")
    g = check_features(gallery, "gallery")
    check_same_dim(q, "probe", g, "gallery")
    ql = check_labels(probe_labels, "probe_labels", q.shape[0], "probe")
    gl = check_labels(gallery_labels, "gallery_labels", g.shape[0], "gallery")
    if isinstance(rank, bool) or not isinstance(rank, int | np.integer) or rank < 1:
        raise ConfigError(f"rank: expected a positive integer, got {rank!r}")
    r = int(rank)
    try:
        fpirs = tuple(float(f) for f in fpir_targets)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"fpir_targets: expected numbers in (0, 1], got {fpir_targets!r}") from err
    if not fpirs or any(not (0.0 < f <= 1.0) for f in fpirs):
        raise ConfigError(f"fpir_targets: expected numbers in (0, 1], got {fpir_targets!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, int | np.integer) or chunk < 1:
        raise ConfigError(f"chunk: expected a positive integer, got {chunk!r}")

    q_ids, g_ids = encode_labels(ql, gl)
    mated = q_ids >= 0
    if mated.all() or not mated.any():
        raise DataError(
            f"probe_labels: open-set search needs mated and non-mated probes, got {int(mated.sum())} mated and "
            f"{int((~mated).sum())} non-mated of shape {ql.shape}"
        )
    q = l2_normalize(q, "probe")
    g = l2_normalize(g, "gallery")
    best_mate, ranks, top_nonmate = search_statistics(q, q_ids, g, g_ids, None, int(chunk))
    # every gallery entry is non-mated for a non-mated search, so its top score is top_nonmate
    nonmated_top = np.sort(top_nonmate[~mated])[::-1]
    n_nm = nonmated_top.size
    found = ranks[mated] <= r
    mate_scores = best_mate[mated]

    tpir: dict[float, float | None] = {}
    thr: dict[float, float | None] = {}
    reached: dict[float, float | None] = {}
    for f in fpirs:
        allowed = math.floor(f * n_nm + 1e-9)
        if allowed < 1:
            tpir[f] = thr[f] = reached[f] = None
            continue
        t = float(nonmated_top[allowed]) if allowed < n_nm else -math.inf
        tpir[f] = float(np.mean(found & (mate_scores > t)))
        thr[f] = t
        reached[f] = float(np.count_nonzero(nonmated_top > t) / n_nm)
    return OpenSetResult(
        tpir=tpir,
        thresholds=thr,
        fpir=reached,
        rank=int(r),
        rank_accuracy=float(found.mean()),
        num_mated=int(mated.sum()),
        num_nonmated=int(n_nm),
        gallery_size=int(g.shape[0]),
    )
