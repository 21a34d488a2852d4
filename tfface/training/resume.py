"""Resuming a killed run exactly where it stopped, and never from another run's backup.

Keras' ``BackupAndRestore`` saves the model and optimizer state after every epoch to
``<out>/backup`` and, on the next ``fit``, restores them and starts at the next epoch. Three things
make the resumed run end where an uninterrupted one does (``tests/test_resume.py`` kills a training
process mid-epoch, reruns it and compares the weights bit for bit):

1. the input order is a pure function of ``(seed, epoch)``
   (:func:`tfface.data.pipeline.make_dataset` with ``epochs`` and ``initial_epoch``): the resumed
   process builds its dataset from :func:`resume_point`, the epoch Keras will restore;
2. :class:`EpochLog` keeps every finished epoch's logs in ``<out>/epochs.json`` (written before the
   backup, atomically), so ``history.json`` holds every epoch, not only the resumed ones;
3. :func:`resume_point` refuses a backup that another recipe or another model wrote: the backup
   folder records the recipe (less ``eval`` and ``output_dir``) and a fingerprint of the model's
   weight names and shapes, and a mismatch is an error naming both.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import keras

from tfface.atomic import atomic_path
from tfface.config import to_dict
from tfface.errors import ConfigError

__all__ = ["EpochLog", "first_difference", "model_fingerprint", "resume_point", "trained_part"]

RECORD = "tfface_run.json"
_IGNORED = ("eval", "output_dir")  # where a run writes and how it is evaluated do not change the weights


def model_fingerprint(model) -> str:
    """A short hash of the model's weight paths, shapes and dtypes (not their values)."""
    text = ";".join(f"{w.path}:{tuple(w.shape)}:{w.dtype}" for w in model.weights)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def trained_part(recipe: Any) -> dict:
    """The recipe as plain JSON data, less what does not change the weights (``eval``, ``output_dir``)."""
    d = recipe if isinstance(recipe, dict) else to_dict(recipe)
    return json.loads(json.dumps({k: v for k, v in d.items() if k not in _IGNORED}, default=str))


def first_difference(a: Any, b: Any, where: str = "", labels: tuple[str, str] = ("in the backup", "now")
                     ) -> str | None:
    """The first dotted key where two recipe mappings differ, as ``key: a <label a>, b <label b>``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else k, labels)
            if d:
                return d
        return None
    return None if a == b else f"{where}: {a!r} {labels[0]}, {b!r} {labels[1]}"


def resume_point(backup_dir: str | os.PathLike, recipe: Any, model) -> int:
    """The epoch a ``fit`` with ``BackupAndRestore(backup_dir)`` will start at (0 without a backup).

    Without a backup, records ``recipe`` and the model's fingerprint in ``backup_dir`` for the next
    run. With one, checks both and raises :class:`ConfigError` naming what differs."""
    backup = Path(backup_dir)
    meta, record = backup / "training_metadata.json", backup / RECORD
    asked = {"recipe": trained_part(recipe), "fingerprint": model_fingerprint(model)}
    if not meta.is_file():
        backup.mkdir(parents=True, exist_ok=True)
        with atomic_path(record) as tmp:
            tmp.write_text(json.dumps(asked, indent=2))
        return 0
    try:
        epoch = int(json.loads(meta.read_text())["epoch"])
        found = json.loads(record.read_text())
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{backup}: a backup of an interrupted run without a readable {RECORD} ({e}); "
                          "it cannot be checked against this recipe: remove the folder to start afresh") from None
    diff = first_difference(found.get("recipe"), asked["recipe"])
    if diff:
        raise ConfigError(f"{backup}: the interrupted run there was trained from another recipe ({diff}); "
                          "remove the folder to start afresh, or rerun with the same recipe to resume")
    if found.get("fingerprint") != asked["fingerprint"]:
        raise ConfigError(f"{backup}: the backup holds another model (fingerprint {found.get('fingerprint')}, "
                          f"this model {asked['fingerprint']}); remove the folder to start afresh")
    return epoch


class EpochLog(keras.callbacks.Callback):
    """Keeps ``{epoch: logs}`` of every finished epoch in ``path`` (rewritten atomically each epoch).

    Put it before ``BackupAndRestore``: a kill between the two leaves the epoch logged but not backed
    up, and the resumed run redoes it and overwrites its entry (same inputs, same values)."""

    def __init__(self, path: str | os.PathLike, fresh: bool):
        super().__init__()
        self.path = Path(path)
        self.epochs: dict[str, dict[str, float]] = {}
        if not fresh and self.path.is_file():
            try:
                self.epochs = json.loads(self.path.read_text())
            except ValueError:
                self.epochs = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epochs[str(epoch)] = {k: float(v) for k, v in (logs or {}).items()}
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.epochs))

    def history(self, epochs: int) -> dict[str, list[float]]:
        """``{metric: [value of epoch 0, 1, ...]}`` over the first ``epochs`` epochs."""
        rows = [self.epochs.get(str(e)) for e in range(epochs)]
        if any(r is None for r in rows):
            missing = [e for e, r in enumerate(rows) if r is None]
            raise ConfigError(f"{self.path}: no log of epoch(s) {missing}; the run's history is incomplete")
        return {k: [r[k] for r in rows] for k in rows[0]}
