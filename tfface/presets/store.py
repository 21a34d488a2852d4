"""Write (:func:`pack`) and read (:func:`load`, :func:`load_model`, :func:`info`) preset recognizers."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tfface.atomic import atomic_path
from tfface.errors import ConfigError

__all__ = ["PRESET_DIR", "PRESET_PREFIX", "available", "info", "load", "load_model", "pack", "preset_name", "recipe"]

PRESET_DIR = Path(__file__).resolve().parent
#: How recipes and commands name a shipped preset as a model: ``preset:builtin-new``.
PRESET_PREFIX = "preset:"
FORMAT = 1
DTYPES = ("float16", "float32")


def _files(name: str, folder: Path) -> tuple[Path, Path]:
    return folder / f"{name}.json", folder / f"{name}.weights.npz"


def available(folder: str | os.PathLike | None = None) -> list[str]:
    """Names of the presets in ``folder`` (default: the package's)."""
    d = Path(folder) if folder else PRESET_DIR
    return sorted(p.name[: -len(".json")] for p in d.glob("*.json") if _files(p.name[:-5], d)[1].is_file())


def info(name: str, folder: str | os.PathLike | None = None) -> dict:
    """The preset's record: recipe, preprocessing, metrics, machine, command, weights' sha256."""
    d = Path(folder) if folder else PRESET_DIR
    meta, weights = _files(name, d)
    if not meta.is_file() or not weights.is_file():
        known = ", ".join(available(d)) or "none"
        raise ConfigError(f"preset {name!r}: not found in {d} (available: {known})")
    try:
        record = json.loads(meta.read_text())
    except ValueError as e:
        raise ConfigError(f"{meta}: not valid JSON ({e})") from e
    if record.get("format") != FORMAT:
        raise ConfigError(f"{meta}: format {record.get('format')!r}, this tfface reads format {FORMAT}")
    return record


def preset_name(ref: str | os.PathLike) -> str | None:
    """``"builtin-new"`` for the reference ``"preset:builtin-new"``; ``None`` for anything else (a path)."""
    ref = str(ref)
    return ref[len(PRESET_PREFIX):] if ref.startswith(PRESET_PREFIX) else None


def recipe(name: str, folder: str | os.PathLike | None = None):
    """The :class:`~tfface.methods.recognizer.config.RecognizerRecipe` that trained the preset."""
    from tfface.config import from_dict
    from tfface.methods.recognizer.config import RecognizerRecipe

    return from_dict(RecognizerRecipe, info(name, folder)["recipe"], where=f"preset {name}")


def _architecture(record: dict):
    """The embedder network (images -> embeddings), rebuilt from the recipe's model section."""
    from tfface.config import from_dict
    from tfface.methods.recognizer import build_recognizer
    from tfface.methods.recognizer.config import ModelSpec

    spec = from_dict(ModelSpec, record["recipe"]["model"], where="model")
    model = build_recognizer(backbone=spec.backbone, input_shape=tuple(record["input_shape"]),
                             embedding_dim=spec.embedding_dim, num_classes=2, margin=spec.margin,
                             margin_kwargs=dict(spec.margin_kwargs), backbone_kwargs=dict(spec.backbone_kwargs),
                             sync_batchnorm=False)
    return model.embedding_model(name=record["name"].replace("-", "_"))


def load_model(name: str, folder: str | os.PathLike | None = None):
    """The preset as a float32 Keras model ``images -> embeddings`` (not normalised)."""
    record = info(name, folder)
    _, weights = _files(name, Path(folder) if folder else PRESET_DIR)
    blob = weights.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != record.get("weights_sha256"):
        raise ConfigError(f"{weights}: sha256 {digest[:12]}... does not match the record's "
                          f"{str(record.get('weights_sha256'))[:12]}... (a damaged or replaced file)")
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        arrays = [z[f"w{i:04d}"] for i in range(len(z.files))]
    model = _architecture(record)
    paths = [v.path for v in model.weights]
    if paths != record["variables"]:
        raise ConfigError(f"preset {name!r}: the rebuilt network's {len(paths)} variables differ from the record's "
                          f"{len(record['variables'])} (this tfface builds another network from the recipe)")
    for v, a in zip(model.weights, arrays, strict=True):
        if tuple(v.shape) != a.shape:
            raise ConfigError(f"preset {name!r}: {v.path} has shape {tuple(v.shape)}, the file {a.shape}")
        v.assign(a.astype(np.float32))
    return model


def load(name: str, folder: str | os.PathLike | None = None):
    """The preset as an :class:`tfface.embed.Embedder` (its recorded preprocessing)."""
    from tfface.embed import Embedder

    record = info(name, folder)
    return Embedder.from_keras(load_model(name, folder), record["preprocessing"], name=name)


def pack(run_dir: str | os.PathLike, name: str, folder: str | os.PathLike | None = None, dtype: str = "float16",
         metrics: dict | None = None, machine: dict | None = None, command: str | None = None) -> dict:
    """Turn a finished recognizer run (``<run_dir>/embedder.keras`` + ``history.json``) into a preset.

    Writes ``<name>.weights.npz`` and ``<name>.json`` atomically into ``folder`` (default: the
    package's) and returns the record."""
    from tfface.keras_files import load_keras_file

    if dtype not in DTYPES:
        raise ConfigError(f"dtype: must be one of {DTYPES}, got {dtype!r}")
    run = Path(run_dir)
    hist_path = run / "history.json"
    if not hist_path.is_file() or not (run / "embedder.keras").is_file():
        raise ConfigError(f"{run}: not a finished recognizer run (needs embedder.keras and history.json)")
    history: dict[str, Any] = json.loads(hist_path.read_text())
    recipe = history.get("recipe") or {}
    if recipe.get("method", "recognizer") != "recognizer":
        raise ConfigError(f"{hist_path}: a {recipe.get('method')!r} run; presets are recognizers")
    trained = load_keras_file(run / "embedder.keras", what="embedder")
    record: dict[str, Any] = {
        "format": FORMAT, "name": name, "dtype": dtype,
        "input_shape": [int(d) for d in trained.input_shape[1:]],
        "embedding_dim": int(trained.output_shape[-1]),
        "preprocessing": f"tfface{int(trained.input_shape[1])}",
        "parameters": int(trained.count_params()),
        "recipe": recipe,
        "train_seconds": history.get("seconds"), "replicas": history.get("replicas"),
        "final_epoch": {k: v[-1] for k, v in (history.get("history", {}).get("train") or {}).items()
                        if isinstance(v, list) and v},
        "metrics": metrics or {}, "machine": machine or {},
        "command": command or f"tfface train {recipe.get('name', '?')}",
    }
    model = _architecture(record)  # the loader's network: its variables must be the trained ones
    if len(model.weights) != len(trained.weights):
        raise ConfigError(f"{run}: the recipe's network has {len(model.weights)} variables, the trained "
                          f"embedder {len(trained.weights)}")
    arrays = {}
    for i, (v, w) in enumerate(zip(model.weights, trained.weights, strict=True)):
        a = np.asarray(w.numpy())
        if tuple(v.shape) != a.shape:
            raise ConfigError(f"{run}: {w.path} has shape {a.shape}, the recipe's network {tuple(v.shape)}")
        arrays[f"w{i:04d}"] = a.astype(dtype)
    record["variables"] = [v.path for v in model.weights]
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    blob = buf.getvalue()
    record["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    record["weights_bytes"] = len(blob)
    d = Path(folder) if folder else PRESET_DIR
    d.mkdir(parents=True, exist_ok=True)
    meta, weights = _files(name, d)
    with atomic_path(weights, suffix=".npz") as tmp:
        tmp.write_bytes(blob)
    with atomic_path(meta, suffix=".json") as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=False, default=str) + "\n")
    return record
