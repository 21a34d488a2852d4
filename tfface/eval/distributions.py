"""Positive and negative pair similarity distributions, their overlap and margin.

For a labelled set, the positive scores are the cosine similarities of all same-identity pairs
``(i, j), i < j`` and the negative scores those of different-identity pairs (a uniform sample
without replacement of ``max_negatives`` when there are more). Both are binned on ``[-1, 1]`` into
histograms normalised to sum 1; their histogram intersection ``sum_b min(h_pos[b], h_neg[b])`` is
the overlap (0 = separable at bin resolution, 1 = identical), and ``E[pos] - E[neg]`` the
expectation margin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tfface.errors import ConfigError, DataError
from tfface.eval.pairs import check_features, check_labels, l2_normalize, make_pairs

__all__ = ["DistributionStats", "histogram_intersection", "similarity_distributions"]


@dataclass
class DistributionStats:
    """The outcome of :func:`similarity_distributions`.

    Attributes:
        bin_edges: ``[n_bins + 1]`` edges on ``[-1, 1]``.
        positive_hist, negative_hist: ``[n_bins]`` histograms, each summing to 1.
        overlap: histogram intersection of the two.
        margin: ``positive_mean - negative_mean``.
        positive_mean, positive_std, negative_mean, negative_std: moments of the scores (``np.std``).
        num_positive, num_negative: pairs used.
        negatives_sampled: whether the negatives are a sample of all negative pairs.
        positive_scores, negative_scores: the pair scores themselves.
    """

    bin_edges: np.ndarray
    positive_hist: np.ndarray
    negative_hist: np.ndarray
    overlap: float
    margin: float
    positive_mean: float
    positive_std: float
    negative_mean: float
    negative_std: float
    num_positive: int
    num_negative: int
    negatives_sampled: bool
    positive_scores: np.ndarray = field(repr=False)
    negative_scores: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python summary with the histograms (not the raw scores)."""
        return {
            "overlap": float(self.overlap),
            "margin": float(self.margin),
            "positive_mean": float(self.positive_mean),
            "positive_std": float(self.positive_std),
            "negative_mean": float(self.negative_mean),
            "negative_std": float(self.negative_std),
            "num_positive": int(self.num_positive),
            "num_negative": int(self.num_negative),
            "negatives_sampled": bool(self.negatives_sampled),
            "bin_edges": self.bin_edges.tolist(),
            "positive_hist": self.positive_hist.tolist(),
            "negative_hist": self.negative_hist.tolist(),
        }


def histogram_intersection(h1: ArrayLike, h2: ArrayLike) -> float:
    """``sum_b min(p1[b], p2[b])`` of two histograms over the same bins, each first normalised to sum 1.

    1 for identical distributions, 0 for ones with no bin in common.
    """
    arrays = []
    for name, h in (("h1", h1), ("h2", h2)):
        a = np.asarray(h, dtype=np.float64)
        if a.ndim != 1 or a.shape[0] == 0:
            raise DataError(f"{name}: expected a non-empty 1-D histogram, got shape {a.shape}")
        if not np.isfinite(a).all() or (a < 0).any() or a.sum() <= 0:
            raise DataError(
                f"{name}: expected finite, non-negative counts with a positive sum (shape {a.shape})"
            )
        arrays.append(a / a.sum())
    if arrays[0].shape != arrays[1].shape:
        raise DataError(f"h2: shape {arrays[1].shape} does not match h1 shape {arrays[0].shape}")
    return float(np.minimum(arrays[0], arrays[1]).sum())


def _pair_cosines(x: np.ndarray, i: np.ndarray, j: np.ndarray, block: int = 16384) -> np.ndarray:
    out = np.empty(i.shape[0], dtype=np.float64)
    for s in range(0, i.shape[0], block):
        out[s : s + block] = np.einsum("ij,ij->i", x[i[s : s + block]], x[j[s : s + block]])
    return out


def _positive_int(value: int | None, name: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def similarity_distributions(
    features: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 100,
    max_negatives: int = 200_000,
    seed: int = 0,
    max_positives: int | None = None,
) -> DistributionStats:
    """Cosine similarity distributions of positive and negative pairs of a labelled feature set.

    Args:
        features: ``[N, D]`` features (L2-normalised inside).
        labels: ``[N]`` identities; at least one identity with two images and two identities.
        n_bins: histogram bins on ``[-1, 1]``.
        max_negatives: cap on negative pairs; above it a seeded uniform sample of distinct pairs.
        seed: seed of the samples.
        max_positives: optional cap on positive pairs (default: all).
    """
    x = check_features(features, "features")
    lab = check_labels(labels, "labels", x.shape[0], "features")
    n_bins = _positive_int(n_bins, "n_bins")
    max_negatives = _positive_int(max_negatives, "max_negatives")
    max_positives = _positive_int(max_positives, "max_positives", allow_none=True)
    x = l2_normalize(x, "features")
    _, ids = np.unique(lab, return_inverse=True)
    counts = np.bincount(ids)
    n = x.shape[0]
    total_pos = int((counts * (counts - 1) // 2).sum())
    total_neg = n * (n - 1) // 2 - total_pos
    if total_pos == 0 or total_neg == 0:
        raise DataError(
            f"labels: need at least one identity with two images and two identities, got {counts.size} "
            f"identities with at most {int(counts.max())} images each (shape {lab.shape})"
        )
    n_pos = total_pos if max_positives is None else min(total_pos, max_positives)
    n_neg = min(total_neg, max_negatives)
    pi, pj, _ = make_pairs(lab, n_pos, 0, seed)
    ni, nj, _ = make_pairs(lab, 0, n_neg, seed + 1)
    pos = np.clip(_pair_cosines(x, pi, pj), -1.0, 1.0)
    neg = np.clip(_pair_cosines(x, ni, nj), -1.0, 1.0)
    edges = np.linspace(-1.0, 1.0, n_bins + 1)
    h_pos = np.histogram(pos, bins=edges)[0] / pos.size
    h_neg = np.histogram(neg, bins=edges)[0] / neg.size
    return DistributionStats(
        bin_edges=edges,
        positive_hist=h_pos,
        negative_hist=h_neg,
        overlap=histogram_intersection(h_pos, h_neg),
        margin=float(pos.mean() - neg.mean()),
        positive_mean=float(pos.mean()),
        positive_std=float(pos.std()),
        negative_mean=float(neg.mean()),
        negative_std=float(neg.std()),
        num_positive=int(pos.size),
        num_negative=int(neg.size),
        negatives_sampled=bool(n_neg < total_neg),
        positive_scores=pos,
        negative_scores=neg,
    )
