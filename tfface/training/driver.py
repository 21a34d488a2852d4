"""One driver for every method: seed, strategy, scope, ``model.fit`` per stage, NaN stop, the record.

A method's training function builds its data, then::

    run = Run(seed=recipe.train.seed)                 # seeds Python, NumPy and TF; picks the strategy
    with run.scope():                                 # the strategy scope (and the dtype policy)
        model = build(...)
        model.compile(...)
    history = run.fit(model, [Stage("train", ds, epochs)], callbacks)
    run.write_record(out / "history.json", recipe, history)

:class:`Stage` is one ``model.fit`` call; a method with a schedule of several (DDL's pretraining then
fine-tuning, FTL's alternating stages) passes them in order, each with its own optional ``before``
hook (e.g. recompile or freeze). Every stage stops on a NaN loss (``keras.callbacks.TerminateOnNaN``)
and a diverged stage raises :class:`tfface.errors.DataError` naming the stage and its last losses,
so nothing is saved from it. ``history.json`` records the recipe as trained (after command-line
overrides), every epoch of every stage, the seconds and the replica count.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfface.atomic import atomic_path
from tfface.config import to_dict
from tfface.errors import DataError

__all__ = ["Run", "Stage", "write_record"]


def write_record(path: str | Path, recipe: Any, history: dict, seconds: float, replicas: int, seed: int,
                 **extra) -> dict:
    """Write ``history.json`` atomically: the recipe as trained (a dataclass or a mapping), every
    epoch of every stage, the seconds, the replica count and the seed (plus ``extra``)."""
    record = {"recipe": to_dict(recipe), "history": history, "seconds": round(float(seconds), 3),
              "replicas": int(replicas), "seed": int(seed), **extra}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str))
    return record


@dataclass
class Stage:
    """One ``model.fit`` call: ``epochs`` over ``dataset`` (``steps_per_epoch`` batches each when given)."""

    name: str
    dataset: Any  # a dataset, or a function returning one (called after ``before``: data from fresh statistics)
    epochs: int
    steps_per_epoch: int | None = None
    callbacks: list = field(default_factory=list)
    before: Callable[[Any], None] | None = None  # called with the model before the stage starts
    initial_epoch: int = 0  # a resumed stage (BackupAndRestore restores the same epoch) runs the rest
    model: Any = None  # the model this stage fits (default: the one given to Run.fit; FTL's phases differ)


class Run:
    """Seed, strategy and dtype policy of one training run (see the module docstring)."""

    def __init__(self, seed: int = 0, strategy=None, mixed_precision: bool = False):
        import keras

        from tfface.distribute import get_strategy

        self.seed = int(seed)
        keras.utils.set_random_seed(self.seed)
        self.strategy = strategy or get_strategy()
        self.mixed_precision = bool(mixed_precision)
        self.seconds = 0.0

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build and compile models in here: the strategy scope, under ``mixed_float16`` when asked
        (the policy is reset afterwards, so later models are float32)."""
        import keras

        if self.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            with self.strategy.scope():
                yield
        finally:
            if self.mixed_precision:
                keras.mixed_precision.set_global_policy("float32")

    def fit(self, model, stages: Sequence[Stage], callbacks: Sequence = (), verbose: int | str = 0
            ) -> dict[str, dict[str, list[float]]]:
        """Run the stages in order; ``{stage name: {metric: [one value per epoch]}}``."""
        import keras

        out: dict[str, dict[str, list[float]]] = {}
        for stage in stages:
            fitted = stage.model if stage.model is not None else model
            if stage.before is not None:
                stage.before(fitted)
            dataset = stage.dataset() if callable(stage.dataset) else stage.dataset
            cbs = [keras.callbacks.TerminateOnNaN(), *callbacks, *stage.callbacks]
            t0 = time.perf_counter()
            hist = fitted.fit(dataset, epochs=stage.epochs, steps_per_epoch=stage.steps_per_epoch,
                             callbacks=cbs, verbose=verbose, shuffle=False)  # data order is the dataset's
            self.seconds += time.perf_counter() - t0
            history = {k: [float(x) for x in v] for k, v in hist.history.items()}
            last = {k: v[-1] for k, v in history.items() if v}
            if len(next(iter(history.values()), [])) < stage.epochs - stage.initial_epoch or any(not np.isfinite(v) for v in last.values()):
                raise DataError(f"stage {stage.name!r}: training diverged (NaN/Inf loss; last values {last}); "
                                "lower the learning rate")
            out[stage.name] = history
        return out

    def write_record(self, path: str | Path, recipe: Any, history: dict, **extra) -> dict:
        """:func:`write_record` with this run's seconds, replicas and seed."""
        return write_record(path, recipe, history, self.seconds, self.replicas, self.seed, **extra)
