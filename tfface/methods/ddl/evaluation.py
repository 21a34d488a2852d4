"""Evaluation per sample subset (easy, each hard kind) for hard-sample methods such as DDL.

The protocol mirrors SCface's (the DDL paper's Table 3): a gallery of easy images (one per test
identity) plus distractor identities, and one probe set per subset (easy probes, each hard kind's
probes). Per subset:

- verification on every probe x test-gallery pair (mated pairs positive, the others negative): TAR at
  the requested FARs (:func:`tfface.eval.verification_scores`);
- closed-set identification with distractors in the gallery: rank-1 (:func:`tfface.eval.identify`);
- the positive and negative score distributions of those pairs: histogram intersection
  ``sum_b min(h+_b, h-_b)`` (:func:`tfface.eval.histogram_intersection`) and the expectation margin
  ``E[s+] - E[s-]`` (the DDL paper's Fig. 1 and Fig. 6 statistics).

:func:`plot_easy_hard_histograms` draws the DDL paper's Fig. 1 (right): positive and negative
similarity histograms of easy and hard probes, one panel per model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfface.errors import DataError
from tfface.eval.distributions import DistributionStats, histogram_intersection
from tfface.eval.identification import identify
from tfface.eval.pairs import l2_normalize
from tfface.eval.verification import far_key, verification_scores

__all__ = ["evaluate_subset", "evaluate_subsets", "plot_easy_hard_histograms"]


def evaluate_subset(
    probe: np.ndarray,
    probe_labels: np.ndarray,
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    distractors: np.ndarray | None = None,
    far_targets: Sequence[float] = (1e-2, 1e-3),
    n_bins: int = 100,
) -> tuple[dict[str, Any], DistributionStats]:
    """Metrics of one probe set against the gallery (see the module docstring); ``(metrics, stats)``."""
    q = l2_normalize(np.asarray(probe, np.float64), "probe")
    g = l2_normalize(np.asarray(gallery, np.float64), "gallery")
    ql, gl = np.asarray(probe_labels), np.asarray(gallery_labels)
    if len(ql) != len(q) or len(gl) != len(g):
        raise DataError(f"labels: {len(ql)} probe and {len(gl)} gallery labels for {len(q)} and {len(g)} features")
    scores = np.clip(q @ g.T, -1.0, 1.0)
    same = ql[:, None] == gl[None, :]
    if not same.any(axis=1).all():
        raise DataError("probe_labels: some probes have no mate in the gallery")
    ver = verification_scores(scores.ravel(), same.ravel(), far_targets=far_targets)
    ident = identify(probe, ql, gallery, gl, distractors=distractors, ranks=(1,))
    pos, neg = scores[same], scores[~same]
    edges = np.linspace(-1.0, 1.0, n_bins + 1)
    h_pos = np.histogram(pos, bins=edges)[0] / pos.size
    h_neg = np.histogram(neg, bins=edges)[0] / neg.size
    stats = DistributionStats(
        bin_edges=edges, positive_hist=h_pos, negative_hist=h_neg,
        overlap=histogram_intersection(h_pos, h_neg), margin=float(pos.mean() - neg.mean()),
        positive_mean=float(pos.mean()), positive_std=float(pos.std()),
        negative_mean=float(neg.mean()), negative_std=float(neg.std()),
        num_positive=int(pos.size), num_negative=int(neg.size), negatives_sampled=False,
        positive_scores=pos, negative_scores=neg,
    )
    metrics: dict[str, Any] = {f"tar@far={far_key(f)}": ver.tar_at_far[f] for f in far_targets}
    metrics.update({
        "rank1": ident.rank_accuracy[1],
        "overlap": stats.overlap,
        "margin": stats.margin,
        "pos_mean": stats.positive_mean,
        "neg_mean": stats.negative_mean,
        "auc": ver.auc,
        "num_probes": int(len(q)),
        "gallery": int(len(g)),
        "distractors": 0 if distractors is None else int(len(distractors)),
    })
    return metrics, stats


def evaluate_subsets(
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    probes: Mapping[str, tuple[np.ndarray, np.ndarray]],
    distractors: np.ndarray | None = None,
    easy: str = "easy",
    far_targets: Sequence[float] = (1e-2, 1e-3),
) -> tuple[dict[str, dict[str, Any]], dict[str, DistributionStats]]:
    """:func:`evaluate_subset` for each named probe set (``{name: (features, labels)}``).

    Every hard subset's metrics also get ``gap``: ``E[s+ | easy] - E[s+ | subset]``, the easy-hard gap
    of mean positive similarity (the DDL paper's Fig. 1 "expectation margin" between d3 and d1).
    """
    if easy not in probes:
        raise DataError(f"probes: no {easy!r} subset (have {sorted(probes)})")
    metrics, stats = {}, {}
    for name, (feats, labels) in probes.items():
        metrics[name], stats[name] = evaluate_subset(feats, labels, gallery, gallery_labels, distractors, far_targets)
    for name in probes:
        metrics[name]["gap"] = float(metrics[easy]["pos_mean"] - metrics[name]["pos_mean"])
    return metrics, stats


def plot_easy_hard_histograms(
    stats: Mapping[str, Mapping[str, DistributionStats]],
    path: str | os.PathLike,
    subsets: Sequence[str] | None = None,
    title: str = "Similarity distributions, easy vs hard probes",
) -> Path:
    """One panel per model (``{model: {subset: stats}}``): positive (solid) and negative (dashed)
    histograms of each subset, with the overlap and the mean positive similarity in the legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from tfface.atomic import atomic_path

    if not stats:
        raise DataError("stats: nothing to plot")
    models = list(stats)
    fig = Figure(figsize=(5.2 * len(models), 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(models), sharey=True, squeeze=False)[0]
    colors = ["tab:blue", "tab:red", "tab:orange", "tab:green", "tab:purple"]
    for ax, model in zip(axes, models, strict=True):
        names = list(subsets or stats[model])
        for color, name in zip(colors, names, strict=False):
            st = stats[model][name]
            ax.stairs(st.positive_hist, st.bin_edges, color=color,
                      label=f"{name} +  (E={st.positive_mean:.2f}, overlap {st.overlap:.3f})")
            ax.stairs(st.negative_hist, st.bin_edges, color=color, linestyle="--", label=f"{name} -")
        ax.set_xlim(-0.6, 1.0)
        ax.set_xlabel("Cosine similarity (probe vs gallery)")
        ax.set_title(model)
        ax.legend(loc="upper left", fontsize="x-small")
    axes[0].set_ylabel("Fraction of pairs")
    fig.suptitle(title)
    target = Path(path)
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return target


def embed_images(model, images: np.ndarray, batch_size: int = 256, preprocessing: str = "arcface") -> np.ndarray:
    """Embeddings (float32 [N, D]) of uint8 images through a Keras model (images -> embeddings)."""
    from tfface.data.pipeline import preprocess

    out = []
    for i in range(0, len(images), batch_size):
        x = preprocess(images[i : i + batch_size], preprocessing)
        out.append(np.asarray(model(x, training=False), np.float32))
    return np.concatenate(out) if out else np.zeros((0, int(model.output_shape[-1])), np.float32)


def evaluate_embedder(model, test, far_targets=(1e-2, 1e-3)):
    """Per-subset metrics and distribution stats (:func:`tfface.methods.ddl.evaluation.evaluate_subsets`)."""
    gallery = embed_images(model, test.gallery)
    dis = embed_images(model, test.distractors) if test.distractors is not None else None
    probes = {k: (embed_images(model, imgs), labs) for k, (imgs, labs) in test.probes.items()}
    return evaluate_subsets(gallery, test.gallery_labels, probes, distractors=dis, far_targets=far_targets)
