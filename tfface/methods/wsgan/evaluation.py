"""WSGAN's metrics (Sec. 4, Tables 1-4): identity-level Recall@K and TPR@FPR over all query x gallery
pairs from a (Q, G) score matrix, and the intra/inter-identity similarity of generated features.

Example:
  >>> import numpy as np
  >>> scores = np.array([[0.9, 0.1, 0.2], [0.3, 0.8, 0.1]], np.float32)
  >>> recall_at_k(scores, np.array([0, 1]), np.array([0, 1, 2]), ks=(1,))
  {'recall@1': 1.0}
"""

from __future__ import annotations

import numpy as np

from tfface.errors import DataError
from tfface.eval.verification import roc_curve
from tfface.methods.wsgan.scoring import identity_scores

__all__ = ["generated_similarity", "matching_metrics", "recall_at_k", "tpr_at_fpr"]


def recall_at_k(scores: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray,
                ks: tuple[int, ...] = (1, 5, 50)) -> dict[str, float]:
    """The fraction of queries whose identity is among the top k gallery identities (max aggregation)."""
    ids, per_id = identity_scores(scores, gallery_labels)
    q = np.asarray(query_labels)
    pos = np.searchsorted(ids, q)
    if np.any(pos >= len(ids)) or np.any(ids[np.minimum(pos, len(ids) - 1)] != q):
        raise DataError("query_labels: every query identity must be in the gallery")
    true = per_id[np.arange(len(q)), pos]
    rank = (per_id > true[:, None]).sum(axis=1)  # ties count in the query's favour
    return {f"recall@{k}": float(np.mean(rank < k)) for k in ks}


def tpr_at_fpr(scores: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray,
               fprs: tuple[float, ...] = (1e-2, 1e-3)) -> dict[str, float]:
    """TPR at each FPR over every (query, gallery image) pair (spec A13)."""
    same = np.asarray(query_labels)[:, None] == np.asarray(gallery_labels)[None, :]
    fpr, tpr, _ = roc_curve(scores.reshape(-1), same.reshape(-1))
    return {f"tpr@fpr={f:g}": float(tpr[np.searchsorted(fpr, f, side="right") - 1]) for f in fprs}


def matching_metrics(scores, query_labels, gallery_labels) -> dict[str, float]:
    return recall_at_k(scores, query_labels, gallery_labels) | tpr_at_fpr(scores, query_labels, gallery_labels)


def generated_similarity(samples: np.ndarray, identities: int = 200) -> dict[str, float]:
    """Table 4: mean cosine among one query's generated features (intra) and between different queries'
    (inter), over the first ``identities`` queries; samples (Q, m, D) with m >= 2."""
    s = np.asarray(samples, np.float64)[:identities]
    if s.ndim != 3 or s.shape[1] < 2:
        raise DataError(f"samples must be (queries, m >= 2, D), got {s.shape}")
    s = s / np.maximum(np.linalg.norm(s, axis=-1, keepdims=True), 1e-12)
    q, m, _ = s.shape
    gram = np.einsum("qmd,qnd->qmn", s, s)
    intra = (gram.sum(axis=(1, 2)) - m) / (m * (m - 1))
    mean = s.mean(axis=1)
    inter_all = mean @ mean.T  # mean-feature dot products = the average cross-query sample cosine
    inter = inter_all[~np.eye(q, dtype=bool)]
    return {"intra_sim": float(intra.mean()), "intra_sim_std": float(intra.std()),
            "inter_sim": float(inter.mean()), "inter_sim_std": float(inter.std())}
