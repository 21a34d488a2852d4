"""Cross-model evaluation of feature translators (R3AN paper Sec. 5.1, Tables 3-6, Fig. 2).

The protocol is MegaFace challenge 1's, across models: for each ordered pair (a, b) of distinct images
of one test identity, probe ``a`` (in the probe model's space) searches a gallery of ``{b} +
distractors`` (in the gallery model's space); the pair is a hit when ``s(a, b)`` is above every
distractor score (ties count as errors). Top-1 accuracy averages over all pairs.

- probe transformation ("R3AN|Tgt"): probe = translated source features, gallery and distractors =
  target features;
- gallery transformation ("Tgt|R3AN", Table 6): probe = target features, gallery and distractors =
  translated source features;
- the compatibility matrix: every (probe space, gallery space) among source, target and translated;
  source|target untranslated shows the incompatibility that motivates the method.

Example:
  >>> import numpy as np
  >>> from tfface.methods.r3an.evaluation import cross_top1
  >>> f = np.eye(4, dtype=np.float32)[[0, 0, 1, 1]]
  >>> cross_top1(f, f, np.array([0, 0, 1, 1]), np.eye(4, dtype=np.float32)[[2, 3]])
  1.0
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from tfface.errors import DataError
from tfface.eval.pairs import check_features, check_labels, check_same_dim, l2_normalize


def cross_top1(probe: np.ndarray, gallery: np.ndarray, labels: np.ndarray, distractors: np.ndarray,
               chunk: int = 2048) -> float:
    """MegaFace per-pair top-1 with probes and gallery from (possibly) different models; see module doc.

    ``probe[i]`` and ``gallery[i]`` are two models' features of the same image ``i``; ``distractors``
    are in the gallery model's space.
    """
    p = l2_normalize(check_features(probe, "probe"), "probe")
    g = l2_normalize(check_features(gallery, "gallery"), "gallery")
    d = l2_normalize(check_features(distractors, "distractors"), "distractors")
    check_same_dim(p, "probe", g, "gallery")
    check_same_dim(g, "gallery", d, "distractors")
    if len(p) != len(g):
        raise DataError(f"probe has {len(p)} rows but gallery {len(g)}: both must be features of the same images")
    lab = check_labels(labels, "labels", len(p), "probe")
    best_d = np.concatenate([(p[i:i + chunk] @ d.T).max(axis=1) for i in range(0, len(p), chunk)])
    hits = total = 0
    for i in range(0, len(p), chunk):
        s = p[i:i + chunk] @ g.T  # (c, N)
        same = lab[i:i + chunk, None] == lab[None, :]
        same[np.arange(s.shape[0]), np.arange(i, i + s.shape[0])] = False  # a != b
        hits += int((same & (s > best_d[i:i + chunk, None])).sum())
        total += int(same.sum())
    if total == 0:
        raise DataError("labels: no identity has two images; the per-pair protocol needs at least one pair")
    return hits / total


def compatibility_matrix(features: Mapping[str, np.ndarray], distractors: Mapping[str, np.ndarray],
                         labels: np.ndarray) -> dict[str, dict[str, float]]:
    """``{probe_space: {gallery_space: top1}}`` over every pair of spaces of the same dimension."""
    out: dict[str, dict[str, float]] = {}
    for a, fa in features.items():
        out[a] = {}
        for b, fb in features.items():
            if fa.shape[1] == fb.shape[1]:
                out[a][b] = cross_top1(fa, fb, labels, distractors[b])
    return out


def evaluate_translator(translate: Callable[[np.ndarray], np.ndarray], source: np.ndarray, target: np.ndarray,
                        labels: np.ndarray, source_distractors: np.ndarray,
                        target_distractors: np.ndarray) -> dict:
    """Probe and gallery transformation top-1, the mean cosine of translated vs true target features."""
    return evaluate_translated(np.asarray(translate(source), np.float32),
                               np.asarray(translate(source_distractors), np.float32),
                               target, labels, target_distractors)


def evaluate_translated(translated: np.ndarray, translated_distractors: np.ndarray, target: np.ndarray,
                        labels: np.ndarray, target_distractors: np.ndarray) -> dict:
    """:func:`evaluate_translator` on features already translated (the test set and the distractors)."""
    t = l2_normalize(check_features(translated, "translated"), "translated")
    td = l2_normalize(check_features(translated_distractors, "translated distractors"), "translated distractors")
    y = l2_normalize(check_features(target, "target"), "target")
    return {
        "probe_transform_top1": cross_top1(t, y, labels, target_distractors),
        "gallery_transform_top1": cross_top1(y, t, labels, td),
        "mean_cosine": float(np.mean(np.sum(t * y, axis=1))),
    }


def error_reduction(accuracy: float, baseline_accuracy: float) -> float:
    """Relative top-1 error reduction of ``accuracy`` over ``baseline_accuracy`` (the paper's ~75% vs FC)."""
    base_err = 1.0 - baseline_accuracy
    return float("nan") if base_err <= 0 else (base_err - (1.0 - accuracy)) / base_err


def plot_projection(spaces: Mapping[str, np.ndarray], labels: np.ndarray, path: str | os.PathLike,
                    identities: int = 10, fit_on: str | None = None, title: str = "") -> Path:
    """Fig. 2/5 of the paper: a 2-D projection of the same images' features in several spaces.

    One panel per space; colour = identity (the first ``identities`` identities). The projection is PCA
    fitted on ``fit_on`` (default: the last space, e.g. the target) and applied to all spaces of that
    dimension, so the panels share axes (t-SNE would need scikit-learn and gives no shared axes).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfface.atomic import atomic_path

    labels = np.asarray(labels)
    keep = np.isin(labels, np.unique(labels)[:identities])
    fit_key = fit_on or list(spaces)[-1]
    ref = l2_normalize(np.asarray(spaces[fit_key], np.float32)[keep], fit_key)
    mean = ref.mean(0)
    _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
    fig, axes = plt.subplots(1, len(spaces), figsize=(4 * len(spaces), 4), squeeze=False)
    for ax, (name, f) in zip(axes[0], spaces.items(), strict=True):
        f = l2_normalize(np.asarray(f, np.float32)[keep], name)
        xy = (f - mean) @ vt[:2].T if f.shape[1] == ref.shape[1] else np.zeros((len(f), 2))
        ax.scatter(xy[:, 0], xy[:, 1], c=labels[keep], cmap="tab10", s=12)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
