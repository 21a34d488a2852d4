"""Train feature translators and evaluate them: the one loop behind ``tfface train recipes/r3an_*.yaml``,
the demo's R3AN part and ``tfface bench r3an``.

:func:`embed_sets` embeds the held-out test identities and the distractors with the old and the new
model once; :func:`train_and_evaluate` trains one translator (R3AN, a Table-3 variant, the FC or the
linear baseline) on the triplets, translates the old test and distractor features once and scores
them with the MegaFace per-pair top-1 (probe and gallery transformation, mean cosine;
:func:`tfface.methods.r3an.evaluation.evaluate_translated`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfface.methods.r3an.config import R3ANConfig
from tfface.methods.r3an.data import PairedFeatures

__all__ = ["TranslationSets", "embed_sets", "own_top1", "train_and_evaluate"]


@dataclass
class TranslationSets:
    """Old and new features of the test images and the distractors, and the test labels."""

    test: dict[str, np.ndarray]  # {"old": [N, Ds], "new": [N, Dt]}
    distractors: dict[str, np.ndarray]
    labels: np.ndarray


def embed_sets(test, distract, old, new) -> TranslationSets:
    """``test``/``distract``: rendered sets (``.images``, ``.labels``); ``old``/``new``: Embedders."""
    return TranslationSets({"old": old.embed(test.images), "new": new.embed(test.images)},
                           {"old": old.embed(distract.images), "new": new.embed(distract.images)},
                           np.asarray(test.labels))


def own_top1(sets: TranslationSets) -> dict[str, float]:
    """Each model's own per-pair top-1 on the test split (the ceiling and the floor of translation)."""
    from tfface.methods.r3an.evaluation import cross_top1

    return {k: cross_top1(sets.test[k], sets.test[k], sets.labels, sets.distractors[k]) for k in ("old", "new")}


def train_and_evaluate(config: R3ANConfig | str, pairs: PairedFeatures, sets: TranslationSets | None,
                       epochs: int, batch_size: int, out_dir: str | Path | None = None, ridge: float | str = "cv",
                       bn_recalibration: bool = True, record=None, verbose: int | str = 0):
    """Train ``config`` (or ``"linear"``) and evaluate it on ``sets`` (skipped when ``None``).

    Returns ``(TranslatorResult, metrics dict, (translated test, translated distractors))``."""
    from tfface.methods.r3an.evaluation import evaluate_translated
    from tfface.training.r3an import train_translator

    res = train_translator(config, pairs, epochs=epochs, batch_size=batch_size, out_dir=out_dir, ridge=ridge,
                           bn_recalibration=bn_recalibration, record=record, verbose=verbose)
    if sets is None:
        return res, {"train_seconds": res.seconds, "parameters": res.parameters}, None
    translated = tuple(res.translator.predict(x, batch_size=1024, verbose=0)
                       for x in (sets.test["old"], sets.distractors["old"]))
    metrics = evaluate_translated(*translated, sets.test["new"], sets.labels, sets.distractors["new"])
    metrics.update(train_seconds=res.seconds, parameters=res.parameters)
    if "ridge" in res.info:
        metrics["ridge"] = res.info["ridge"]
    return res, metrics, translated
