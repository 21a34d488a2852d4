"""One call that runs the standard protocols on a labelled test set (plus distractors).

The split follows the usual closed-set convention: the first image of each identity is enrolled
in the gallery, every other image is a probe; distractors (identities disjoint from the test set)
are added to the gallery for identification. Verification uses balanced pairs drawn from the whole
test set: ``n_pairs`` same and ``n_pairs`` different pairs, or, when the set makes fewer than ``n_pairs``
same-identity pairs, all of those and as many different pairs (so accuracy 0.5, not the share of
impostor pairs, is what a constant answer scores).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfface.errors import DataError
from tfface.eval.distributions import DistributionStats, similarity_distributions
from tfface.eval.identification import IdentificationResult, identify
from tfface.eval.pairs import make_pairs
from tfface.eval.verification import VerificationResult, verification


@dataclass
class FaceEvaluation:
    verification: VerificationResult
    identification: IdentificationResult  # with distractors (when given)
    identification_no_distractors: IdentificationResult
    distributions: DistributionStats

    def to_dict(self) -> dict[str, Any]:
        return {
            "verification": self.verification.to_dict(),
            "identification": self.identification.to_dict(),
            "identification_no_distractors": self.identification_no_distractors.to_dict(),
            "distributions": self.distributions.to_dict(),
        }


def gallery_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gallery index: the first image of each identity, probe index: all other images)."""
    labels = np.asarray(labels)
    _, first = np.unique(labels, return_index=True)
    probe = np.setdiff1d(np.arange(len(labels)), first)
    if len(probe) == 0:
        raise DataError("labels: every identity has one image; identification needs at least two of some")
    return np.sort(first), probe


def evaluate_embeddings(
    features: np.ndarray,
    labels: np.ndarray,
    distractors: np.ndarray | None = None,
    n_pairs: int = 3000,
    seed: int = 0,
    ranks: tuple[int, ...] = (1, 5, 10),
    search=None,
    balanced: bool = True,
) -> FaceEvaluation:
    """Verification, identification (with and without distractors) and similarity distributions.

    Verification pairs are balanced (as many different-identity pairs as same-identity pairs) unless
    ``balanced=False``, which keeps ``n_pairs`` different pairs whatever the number of same pairs.
    """
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels)
    _, counts = np.unique(labels, return_counts=True)
    total_pos = int((counts * (counts - 1) // 2).sum())
    total_neg = len(labels) * (len(labels) - 1) // 2 - total_pos
    n_pos = min(n_pairs, total_pos)  # small test sets have fewer positives
    n_neg = min(n_pos if balanced else n_pairs, total_neg)
    if balanced:
        n_pos = min(n_pos, n_neg)
    i1, i2, same = make_pairs(labels, n_pos, n_neg, seed=seed)
    ver = verification(features[i1], features[i2], same)
    g, p = gallery_split(labels)
    ident = identify(features[p], labels[p], features[g], labels[g], distractors=distractors, ranks=ranks,
                     search=search)
    plain = identify(features[p], labels[p], features[g], labels[g], ranks=ranks)
    dist = similarity_distributions(features, labels, seed=seed)
    return FaceEvaluation(ver, ident, plain, dist)


def evaluate_feature_files(
    probe: str | os.PathLike,
    gallery: str | os.PathLike | None = None,
    distractors: str | os.PathLike | None = None,
    out_dir: str | os.PathLike = "runs/eval",
) -> dict:
    """``tfface eval``: evaluate feature files, write ``report.json`` and plots to ``out_dir``."""
    from tfface.data.features import load_features
    from tfface.eval.plots import plot_cmc, plot_roc, plot_similarity_histograms
    from tfface.eval.report import write_json

    test = load_features(probe)
    dis = load_features(distractors, expected_dim=test.dim).features if distractors else None
    if gallery:
        gal = load_features(gallery, expected_dim=test.dim)
        ident = identify(test.features, test.labels, gal.features, gal.labels, distractors=dis)
        report = {"identification": ident.to_dict()}
        results = {"identification": ident}
    else:
        ev = evaluate_embeddings(test.features, test.labels, distractors=dis)
        report = ev.to_dict()
        results = ev
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(report, out / "report.json")
    name = Path(probe).stem
    if isinstance(results, FaceEvaluation):
        plot_roc({name: results.verification}, out / "roc.png")
        plot_cmc({name: results.identification}, out / "cmc.png")
        plot_similarity_histograms({name: results.distributions}, out / "similarity.png")
    else:
        plot_cmc({name: results["identification"]}, out / "cmc.png")
    return report
