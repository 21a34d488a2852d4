"""Cross-model compatibility matrix: query features of one model against a gallery of another.

As apple/ml-fct judges feature translation: cell ``(i, j)`` is the closed-set rank-``k`` accuracy
(:func:`tfface.eval.identification.identify`) of queries embedded by model ``i`` against a gallery
(and distractors) embedded by model ``j``. The diagonal is each model alone (old/old, new/new); an
off-diagonal cell such as new-query vs transformed-old gallery measures compatibility. Cells whose
feature dimensions differ cannot be searched and are NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tfface.errors import ConfigError, DataError
from tfface.eval.identification import identify
from tfface.eval.pairs import check_features, check_labels, check_same_dim

__all__ = ["CrossModelResult", "cross_model_matrix"]


@dataclass
class CrossModelResult:
    """The outcome of :func:`cross_model_matrix`.

    Attributes:
        matrix: ``[len(names), len(gallery_names)]`` rank-``rank`` accuracy, rows = query model,
            columns = gallery model, NaN where the feature dimensions differ.
        names: the query models (row order).
        gallery_names: the gallery models (column order); equal to ``names`` when both dicts have
            the same keys.
        rank: the rank ``k`` of the accuracy.
    """

    matrix: np.ndarray
    names: list[str]
    gallery_names: list[str]
    rank: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form; NaN cells become ``None``."""
        return {
            "rank": int(self.rank),
            "names": list(self.names),
            "gallery_names": list(self.gallery_names),
            "matrix": [[None if np.isnan(v) else float(v) for v in row] for row in self.matrix],
        }

    def to_markdown(self, digits: int = 2) -> str:
        """A markdown table in percent: rows ``query \\ gallery``, ``n/a`` for NaN cells."""
        header = [f"query \\ gallery (rank-{self.rank} %)", *self.gallery_names]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, row in zip(self.names, self.matrix, strict=True):
            cells = ["n/a" if np.isnan(v) else f"{100 * v:.{digits}f}" for v in row]
            lines.append("| " + " | ".join([name, *cells]) + " |")
        return "\n".join(lines) + "\n"


def _check_dict(d: Mapping[str, ArrayLike], name: str, allow_empty: bool = False) -> dict[str, np.ndarray]:
    if not isinstance(d, Mapping) or not d:
        raise DataError(
            f"{name}: expected a non-empty dict of model name -> [N, D] features, got {type(d).__name__}"
        )
    return {str(k): check_features(v, f"{name}[{k!r}]", allow_empty=allow_empty) for k, v in d.items()}


def cross_model_matrix(
    probe_features: Mapping[str, ArrayLike],
    gallery_features: Mapping[str, ArrayLike],
    probe_labels: ArrayLike,
    gallery_labels: ArrayLike,
    distractors: Mapping[str, ArrayLike] | None = None,
    rank: int = 1,
    chunk: int = 4096,
) -> CrossModelResult:
    """Rank-``rank`` accuracy of every (query model, gallery model) pair.

    Args:
        probe_features: ``{model: [Q, D_model]}``, the same probe images embedded by each model.
        gallery_features: ``{model: [G, D_model]}``, the same gallery images embedded by each model.
        probe_labels, gallery_labels: identities, shared by all models.
        distractors: optional ``{gallery model: [M, D]}``; when given, every gallery model needs one.
        rank: the ``k`` of the rank-k accuracy.
    """
    probes = _check_dict(probe_features, "probe_features")
    galleries = _check_dict(gallery_features, "gallery_features")
    if isinstance(rank, bool) or not isinstance(rank, int | np.integer) or rank < 1:
        raise ConfigError(f"rank: expected a positive integer, got {rank!r}")
    r = int(rank)
    for k, q in probes.items():
        check_labels(probe_labels, "probe_labels", q.shape[0], f"probe_features[{k!r}]")
    for k, g in galleries.items():
        check_labels(gallery_labels, "gallery_labels", g.shape[0], f"gallery_features[{k!r}]")
    extra: dict[str, np.ndarray] = {}
    if distractors is not None:
        extra = _check_dict(distractors, "distractors", allow_empty=True)
        missing = [g for g in galleries if g not in extra]
        if missing:
            raise DataError(f"distractors: no entry for gallery model(s) {missing}; keys are {sorted(extra)}")
        for k, g in galleries.items():
            check_same_dim(g, f"gallery_features[{k!r}]", extra[k], f"distractors[{k!r}]")
    matrix = np.full((len(probes), len(galleries)), np.nan)
    for i, q in enumerate(probes.values()):
        for j, (gn, g) in enumerate(galleries.items()):
            if q.shape[1] != g.shape[1]:
                continue
            res = identify(
                q, probe_labels, g, gallery_labels, distractors=extra.get(gn), ranks=(r,), chunk=chunk
            )
            matrix[i, j] = res.rank_accuracy[r]
    return CrossModelResult(matrix=matrix, names=list(probes), gallery_names=list(galleries), rank=int(r))
