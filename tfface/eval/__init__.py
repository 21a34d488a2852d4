"""tfface.eval: face-recognition evaluation protocols (numpy), their plots and reports.

Conventions follow insightface / TFace (LFW-style 10-fold verification, TAR at FAR from the ROC,
MegaFace identification) and NIST FRVT (open-set TPIR at FPIR); ``docs/evaluation.md`` gives the
exact definitions. Features are ``[N, D]`` float arrays; similarity is the cosine of L2-normalised
features; bad input raises :class:`tfface.errors.DataError` naming the argument and its shape.
"""

from __future__ import annotations

from tfface.eval.cross_model import CrossModelResult, cross_model_matrix
from tfface.eval.distributions import DistributionStats, histogram_intersection, similarity_distributions
from tfface.eval.identification import (
    IdentificationResult,
    SearchFn,
    exact_search,
    identify,
    megaface_identification,
)
from tfface.eval.open_set import OpenSetResult, tpir_at_fpir
from tfface.eval.pairs import l2_normalize, make_pairs, pair_scores
from tfface.eval.plots import plot_cmc, plot_roc, plot_similarity_histograms
from tfface.eval.report import markdown_table, to_jsonable, write_json
from tfface.eval.verification import (
    DEFAULT_FAR_TARGETS,
    VerificationResult,
    roc_curve,
    verification,
    verification_scores,
)

__all__ = [
    "DEFAULT_FAR_TARGETS",
    "CrossModelResult",
    "DistributionStats",
    "IdentificationResult",
    "OpenSetResult",
    "SearchFn",
    "VerificationResult",
    "cross_model_matrix",
    "exact_search",
    "histogram_intersection",
    "identify",
    "l2_normalize",
    "make_pairs",
    "markdown_table",
    "megaface_identification",
    "pair_scores",
    "plot_cmc",
    "plot_roc",
    "plot_similarity_histograms",
    "roc_curve",
    "similarity_distributions",
    "to_jsonable",
    "tpir_at_fpir",
    "verification",
    "verification_scores",
    "write_json",
]
