"""Plots of evaluation results: ROC, CMC and similarity histograms, written as PNG atomically.

Figures are drawn with matplotlib's object API on the Agg canvas (``matplotlib.figure.Figure``), so
no global pyplot state or interactive backend is touched and nothing is ever shown.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tfface.atomic import atomic_path
from tfface.errors import DataError
from tfface.eval.distributions import DistributionStats
from tfface.eval.identification import IdentificationResult
from tfface.eval.verification import VerificationResult

__all__ = ["plot_cmc", "plot_roc", "plot_similarity_histograms"]


def _check_results(results: Mapping[str, object], name: str, kind: type) -> None:
    if not isinstance(results, Mapping) or not results:
        raise DataError(
            f"{name}: expected a non-empty dict of name -> {kind.__name__}, got {type(results).__name__}"
        )
    for key, value in results.items():
        if not isinstance(value, kind):
            raise DataError(f"{name}[{key!r}]: expected a {kind.__name__}, got {type(value).__name__}")


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    FigureCanvasAgg(fig)
    target = Path(path)
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return target


def plot_roc(results: Mapping[str, VerificationResult], path: str | os.PathLike, title: str = "ROC") -> Path:
    """TAR against FAR (log-scale x axis) for each named verification result; returns ``path``."""
    _check_results(results, "results", VerificationResult)
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    min_far = 1.0
    for name, res in results.items():
        keep = res.fpr > 0  # log axis: FAR = 0 cannot be drawn
        ax.plot(res.fpr[keep], res.tpr[keep], label=f"{name} (AUC {res.auc:.4f}, EER {100 * res.eer:.2f}%)")
        if keep.any():
            min_far = min(min_far, float(res.fpr[keep].min()))
    ax.set_xscale("log")
    ax.set_xlim(min(min_far, 0.1), 1.0)  # from the smallest measurable FAR
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("False accept rate (FAR)")
    ax.set_ylabel("True accept rate (TAR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def plot_cmc(
    results: Mapping[str, IdentificationResult], path: str | os.PathLike, title: str = "CMC"
) -> Path:
    """Identification rate against rank for each named identification result; returns ``path``."""
    _check_results(results, "results", IdentificationResult)
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    for name, res in results.items():
        ranks = np.arange(1, res.cmc.size + 1)
        ax.plot(
            ranks,
            res.cmc,
            marker="o" if res.cmc.size <= 20 else None,
            label=f"{name} (rank-1 {100 * res.cmc[0]:.2f}%)",
        )
    ax.set_xlabel("Rank")
    ax.set_ylabel("Identification rate")
    ax.set_ylim(0.0, 1.01)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def plot_similarity_histograms(
    stats: Mapping[str, DistributionStats], path: str | os.PathLike, title: str = "Cosine similarity"
) -> Path:
    """Positive (solid) and negative (dashed) pair-similarity histograms per model; returns ``path``."""
    _check_results(stats, "stats", DistributionStats)
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    for k, (name, st) in enumerate(stats.items()):
        color = f"C{k % 10}"
        ax.stairs(
            st.positive_hist, st.bin_edges, color=color, label=f"{name} positive (overlap {st.overlap:.3f})"
        )
        ax.stairs(st.negative_hist, st.bin_edges, color=color, linestyle="--", label=f"{name} negative")
    ax.set_xlim(-1.0, 1.0)
    ax.set_xlabel("Cosine similarity")
    ax.set_ylabel("Fraction of pairs")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    return _save(fig, path)
