"""1:1 verification: LFW-style 10-fold accuracy, ROC, AUC, EER and TAR at FAR.

Conventions (see ``docs/evaluation.md``):

* a pair is predicted "same" when its score is ``>= threshold`` (as ``sklearn.metrics.roc_curve``);
* 10-fold accuracy follows insightface's ``calculate_roc``: contiguous, unshuffled folds
  (``KFold(shuffle=False)``); on the 9 training folds every candidate threshold is tried and the most
  accurate one (the highest threshold among ties, i.e. insightface's first best distance threshold)
  is applied to the held-out fold;
* the ROC is computed on all pairs and equals ``sklearn.metrics.roc_curve`` point for point;
* ``TAR@FAR = max{TPR(t) : FPR(t) <= FAR}`` over every threshold (the full ROC, none dropped), and
  ``None`` when ``FAR < 1 / num_negative``: such a FAR cannot be measured on that many negatives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tfface.errors import ConfigError, DataError
from tfface.eval.pairs import check_issame, check_scores, pair_scores

__all__ = ["DEFAULT_FAR_TARGETS", "VerificationResult", "roc_curve", "verification", "verification_scores"]

DEFAULT_FAR_TARGETS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def far_key(far: float) -> str:
    """The string key of a FAR target in ``to_dict`` output: ``1e-06``, ``0.001``, ..."""
    return f"{far:g}"


@dataclass
class VerificationResult:
    """The outcome of :func:`verification_scores`.

    Attributes:
        accuracy: mean held-out accuracy over the folds.
        accuracy_std: population standard deviation of the fold accuracies (``np.std``, as insightface).
        fold_accuracies: ``[n_folds]`` held-out accuracy of each fold.
        fold_thresholds: ``[n_folds]`` the threshold chosen on each fold's training folds.
        auc: area under the ROC (trapezoidal, equals ``sklearn.metrics.roc_auc_score``).
        eer: equal error rate, where ``FPR = 1 - TPR`` on the linearly interpolated ROC.
        tar_at_far: ``{FAR target: TAR or None}``.
        threshold_at_far: ``{FAR target: score threshold or None}`` achieving ``tar_at_far``.
        fpr, tpr, thresholds: the ROC on all pairs, as ``sklearn.metrics.roc_curve`` returns it.
        num_positive, num_negative: pair counts.
        n_folds: number of folds.
    """

    accuracy: float
    accuracy_std: float
    fold_accuracies: np.ndarray
    fold_thresholds: np.ndarray
    auc: float
    eer: float
    tar_at_far: dict[float, float | None]
    threshold_at_far: dict[float, float | None]
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    thresholds: np.ndarray = field(repr=False)
    num_positive: int = 0
    num_negative: int = 0
    n_folds: int = 10

    def to_dict(self, include_roc: bool = False) -> dict[str, Any]:
        """Plain-python summary; the ROC arrays only with ``include_roc`` (they can be long)."""
        out: dict[str, Any] = {
            "accuracy": float(self.accuracy),
            "accuracy_std": float(self.accuracy_std),
            "fold_accuracies": [float(a) for a in self.fold_accuracies],
            "fold_thresholds": [float(t) for t in self.fold_thresholds],
            "auc": float(self.auc),
            "eer": float(self.eer),
            "tar_at_far": {far_key(k): v for k, v in self.tar_at_far.items()},
            "threshold_at_far": {far_key(k): v for k, v in self.threshold_at_far.items()},
            "num_positive": int(self.num_positive),
            "num_negative": int(self.num_negative),
            "n_folds": int(self.n_folds),
        }
        if include_roc:
            out["roc"] = {
                "fpr": self.fpr.tolist(),
                "tpr": self.tpr.tolist(),
                "thresholds": self.thresholds.tolist(),
            }
        return out


def _roc_counts(scores: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False/true positive counts at every distinct score, descending (sklearn's ``_binary_clf_curve``)."""
    order = np.argsort(scores, kind="mergesort")[::-1]
    s = scores[order]
    y = issame[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y, dtype=np.int64)[last_of_run]
    fps = 1 + last_of_run - tps
    return fps, tps, s[last_of_run]


def roc_curve(
    scores: ArrayLike, issame: ArrayLike, drop_intermediate: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` exactly as ``sklearn.metrics.roc_curve(issame, scores)``.

    Point ``k`` is the operating point of "same iff score >= thresholds[k]"; ``thresholds[0] = inf``
    gives (0, 0). With ``drop_intermediate`` collinear points are removed as sklearn does.
    """
    s = check_scores(scores)
    y = check_issame(issame, s.shape[0])
    _require_both_classes(y)
    fps, tps, thr = _roc_counts(s, y)
    if drop_intermediate and fps.size > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps = np.r_[0, fps]
    tps = np.r_[0, tps]
    thr = np.r_[np.inf, thr]
    return fps / fps[-1], tps / tps[-1], thr


def _require_both_classes(y: np.ndarray) -> None:
    if y.all() or not y.any():
        raise DataError(
            f"issame: needs both positive and negative pairs, got {int(y.sum())} positive and "
            f"{int((~y).sum())} negative (shape {y.shape})"
        )


def _best_threshold(scores: np.ndarray, issame: np.ndarray, candidates: np.ndarray | None) -> float:
    """The most accurate threshold on these pairs; among ties the highest (insightface's argmax)."""
    pos = np.sort(scores[issame])
    neg = np.sort(scores[~issame])
    if candidates is None:
        u = np.unique(scores)[::-1]
        cand = np.concatenate([[np.inf], u[1:] + (u[:-1] - u[1:]) / 2, [-np.inf]])
    else:
        cand = np.sort(candidates)[::-1]
    tp = pos.size - np.searchsorted(pos, cand, side="left")  # positives with score >= t
    fp = neg.size - np.searchsorted(neg, cand, side="left")
    correct = tp + (neg.size - fp)
    return float(cand[int(np.argmax(correct))])


def _eer(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """FPR where FPR = FNR on the piecewise-linear ROC."""
    d = (1.0 - tpr) - fpr  # non-increasing from 1 at (0, 0) to -1 at (1, 1)
    i = int(np.argmax(d <= 0))
    if d[i] == 0:
        return float(fpr[i])
    t = d[i - 1] / (d[i - 1] - d[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def _check_far_targets(far_targets: Sequence[float]) -> tuple[float, ...]:
    try:
        fars = tuple(float(f) for f in far_targets)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"far_targets: expected numbers in (0, 1], got {far_targets!r}") from err
    if not fars or any(not (0.0 < f <= 1.0) for f in fars):
        raise ConfigError(f"far_targets: expected numbers in (0, 1], got {far_targets!r}")
    return fars


def verification_scores(
    scores: ArrayLike,
    issame: ArrayLike,
    n_folds: int = 10,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
    thresholds: ArrayLike | None = None,
) -> VerificationResult:
    """Verification metrics from pair scores (higher = more similar).

    Args:
        scores: ``[N]`` similarity of each pair.
        issame: ``[N]`` bool (or 0/1), true for a same-identity pair.
        n_folds: number of contiguous folds for the accuracy (LFW: 10).
        far_targets: FARs at which TAR is reported.
        thresholds: optional fixed grid of candidate thresholds for the fold search (insightface uses
            ``np.arange(0, 4, 0.01)`` on squared distances, i.e. ``1 - d/2`` in cosine); by default every
            midpoint between consecutive distinct training scores, plus ``+-inf``, which finds the exact
            best training accuracy.
    """
    s = check_scores(scores)
    y = check_issame(issame, s.shape[0])
    _require_both_classes(y)
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 2:
        raise ConfigError(f"n_folds: expected an integer >= 2, got {n_folds!r}")
    if s.shape[0] < n_folds:
        raise DataError(
            f"scores: {s.shape[0]} pairs (shape {s.shape}) cannot be split into n_folds={n_folds} folds"
        )
    fars = _check_far_targets(far_targets)
    grid = None
    if thresholds is not None:
        grid = check_scores(thresholds, "thresholds")

    # 10-fold accuracy (insightface calculate_roc; sklearn KFold(shuffle=False) sizes = np.array_split).
    folds = np.array_split(np.arange(s.shape[0]), int(n_folds))
    fold_acc = np.empty(len(folds))
    fold_thr = np.empty(len(folds))
    for k, test in enumerate(folds):
        train = np.ones(s.shape[0], bool)
        train[test] = False
        fold_thr[k] = _best_threshold(s[train], y[train], grid)
        fold_acc[k] = np.mean((s[test] >= fold_thr[k]) == y[test])

    # ROC on all pairs.
    fps, tps, thr = _roc_counts(s, y)
    n_neg, n_pos = int(fps[-1]), int(tps[-1])
    full_fpr = np.r_[0, fps] / n_neg
    full_tpr = np.r_[0, tps] / n_pos
    full_thr = np.r_[np.inf, thr]
    fpr, tpr, roc_thr = roc_curve(s, y, drop_intermediate=True)

    tar: dict[float, float | None] = {}
    tar_thr: dict[float, float | None] = {}
    fps_full = np.r_[0, fps]
    for far in fars:
        allowed = math.floor(far * n_neg + 1e-9)  # false accepts allowed at this FAR
        if allowed < 1:
            tar[far] = tar_thr[far] = None
            continue
        i = int(np.searchsorted(fps_full, allowed, side="right")) - 1  # last point with fps <= allowed
        tar[far] = float(full_tpr[i])
        tar_thr[far] = float(full_thr[i])

    return VerificationResult(
        accuracy=float(fold_acc.mean()),
        accuracy_std=float(fold_acc.std()),
        fold_accuracies=fold_acc,
        fold_thresholds=fold_thr,
        auc=float(np.trapezoid(full_tpr, full_fpr)),
        eer=_eer(full_fpr, full_tpr),
        tar_at_far=tar,
        threshold_at_far=tar_thr,
        fpr=fpr,
        tpr=tpr,
        thresholds=roc_thr,
        num_positive=n_pos,
        num_negative=n_neg,
        n_folds=int(n_folds),
    )


def verification(emb1: ArrayLike, emb2: ArrayLike, issame: ArrayLike, **kwargs: Any) -> VerificationResult:
    """Cosine similarity of each row pair ``(emb1[i], emb2[i])``, then :func:`verification_scores`.

    Features are L2-normalised inside. ``kwargs`` go to :func:`verification_scores`.
    """
    scores = pair_scores(emb1, emb2, "emb1", "emb2")
    check_issame(issame, scores.shape[0], "issame", "emb1 rows")
    return verification_scores(scores, issame, **kwargs)
