"""Translate a feature file from an old model's space to a new one's, streamed: no images, no re-extraction.

A *translator* (R3AN's ``normalise -> generator -> extractor``, or any model with the same contract) maps
old-model features ``source_features [N, Ds]`` float32 to new-model features ``target_features [N, Dt]``.
:func:`translate_features` runs one over a feature file (:mod:`tfface.data.features`) of any size:

* ``features`` is memory-mapped and read in row blocks of ``batch_size`` (:func:`iter_feature_batches`);
* each block is translated and (by default) L2-normalised, then written straight into the ``features.npy``
  member of the output zip (an uncompressed ``.npz``, as :func:`save_features` writes), so neither the
  input nor the output is ever held whole in memory;
* ``labels``, ``ids`` and ``paths`` are copied member by member, byte for byte, after their ``.npy``
  headers are checked against the row count;
* the output is written to a hidden temporary file beside ``out_path`` and renamed at the end: an
  interrupted or failed run leaves no half-written gallery, and an existing output stays as it was;
* the output's size is known once the first block is translated, and is checked against the free disk
  space before anything is written (:class:`~tfface.atomic.InsufficientSpaceError`, an ``OSError``).

The translator may be a SavedModel version directory (``<base>/<name>/<version>``), a TF Serving base
directory (the highest integer version is used), a ``.keras`` file (loaded with ``safe_mode=True``), an
in-memory Keras model, or any callable ``f(x [n, Ds] float32) -> [n, Dt]`` (see :func:`load_translator`).

Example::

    from tfface.translation.translate import translate_features
    report = translate_features("runs/export/translator", "old_gallery.npz", "new_gallery.npz")
    report.count, report.source_dim, report.target_dim
"""

from __future__ import annotations

import os
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npformat

from tfface.atomic import atomic_path, check_free_space
from tfface.data.features import feature_file_shape, member_header
from tfface.errors import ConfigError, DataError

__all__ = ["TranslateReport", "Translator", "feature_file_shape", "load_translator", "translate_features"]

INPUT_NAME = "source_features"
OUTPUT_NAME = "target_features"
_ROW_FIELDS = ("labels", "ids", "paths")


@dataclass
class Translator:
    """A loaded translator: ``translator(x [n, input_dim]) -> [n, output_dim]`` float32 (not normalised).

    ``input_dim`` / ``output_dim`` are ``None`` where the source does not declare them (a plain callable).
    ``source`` names where it came from, for error messages.
    """

    fn: Callable[[np.ndarray], Any]
    input_dim: int | None
    output_dim: int | None
    source: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = self.fn(np.ascontiguousarray(x, dtype=np.float32))
        y = np.asarray(y.numpy() if hasattr(y, "numpy") else y)
        if y.ndim != 2 or y.shape[0] != x.shape[0]:
            raise DataError(f"translator {self.source}: returned shape {y.shape} for an input of shape {x.shape}; "
                            f"expected ({x.shape[0]}, D)")
        return y.astype(np.float32, copy=False)


@dataclass
class TranslateReport:
    """What :func:`translate_features` wrote."""

    path: Path
    count: int
    source_dim: int
    target_dim: int
    seconds: float
    translator: str


def _dim(shape: Any) -> int | None:
    try:
        d = shape[-1]
    except (IndexError, TypeError):
        return None
    return None if d is None else int(d)


def _saved_model_dir(path: Path) -> Path:
    if (path / "saved_model.pb").is_file():
        return path
    versions = sorted((int(p.name), p) for p in path.iterdir()
                      if p.is_dir() and p.name.isdigit() and (p / "saved_model.pb").is_file())
    if not versions:
        raise DataError(f"translator {path}: not a SavedModel (no saved_model.pb) and no integer version "
                        "folders holding one (TF Serving layout <base>/<version>/saved_model.pb)")
    return versions[-1][1]


def _from_saved_model(path: Path, input_name: str, output_name: str, signature: str) -> Translator:
    import tensorflow as tf

    vdir = _saved_model_dir(path)
    try:
        loaded = tf.saved_model.load(str(vdir), tags=["serve"])
    except Exception as e:  # noqa: BLE001 - TF raises many types for a damaged SavedModel
        raise DataError(f"translator {vdir}: cannot load the SavedModel ({type(e).__name__}: {e})"[:1000]) from e
    if signature not in loaded.signatures:
        raise DataError(f"translator {vdir}: no signature {signature!r}; signatures: {sorted(loaded.signatures)}")
    fn = loaded.signatures[signature]
    inputs = fn.structured_input_signature[1]
    if input_name not in inputs:
        raise DataError(f"translator {vdir}: signature {signature!r} has inputs {sorted(inputs)}, "
                        f"not {input_name!r}")
    if len(inputs) != 1:
        raise DataError(f"translator {vdir}: signature {signature!r} takes {sorted(inputs)}; a translator takes "
                        f"only {input_name!r}")
    spec = inputs[input_name]
    if spec.dtype != tf.float32 or spec.shape.rank != 2:
        raise DataError(f"translator {vdir}: input {input_name!r} is {spec.dtype.name} {spec.shape}; "
                        "expected float32 [None, Ds]")
    outputs = fn.structured_outputs
    if output_name in outputs:
        out_key = output_name
    elif len(outputs) == 1:
        out_key = next(iter(outputs))
    else:
        raise DataError(f"translator {vdir}: signature {signature!r} has outputs {sorted(outputs)}, "
                        f"not {output_name!r}")

    def run(x: np.ndarray) -> Any:
        return fn(**{input_name: tf.constant(x)})[out_key]

    return Translator(run, _dim(spec.shape.as_list()), _dim(outputs[out_key].shape.as_list()),
                      f"{vdir} (signature {signature!r}: {input_name} -> {out_key})")


def _from_keras(model: Any, output_name: str, source: str) -> Translator:
    import tensorflow as tf

    def run(x: np.ndarray) -> Any:
        y = model(tf.constant(x), training=False)
        if isinstance(y, dict):
            if output_name not in y:
                raise DataError(f"translator {source}: returns outputs {sorted(y)}, not {output_name!r}")
            y = y[output_name]
        elif isinstance(y, list | tuple):
            raise DataError(f"translator {source}: returns {len(y)} outputs; a translator returns one tensor")
        return y

    in_shape = getattr(model, "input_shape", None) if getattr(model, "built", True) else None
    out_shape = getattr(model, "output_shape", None) if getattr(model, "built", True) else None
    in_dim = _dim(in_shape) if not isinstance(in_shape, dict | list) else None
    out_dim = _dim(out_shape) if not isinstance(out_shape, dict | list) else None
    return Translator(run, in_dim, out_dim, source)


def load_translator(translator: Any, input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME,
                    signature: str = "serving_default", input_dim: int | None = None) -> Translator:
    """A :class:`Translator` from a SavedModel dir (version or base dir), a ``.keras`` file, a model or a callable.

    A SavedModel must have ``signature`` with the single float32 ``[None, Ds]`` input ``input_name``; its
    output is ``output_name`` (or its only output). ``input_dim`` declares ``Ds`` for a plain callable.
    Raises :class:`DataError` naming the path and the signature when it does not fit.
    """
    if isinstance(translator, Translator):
        return translator
    if isinstance(translator, str | os.PathLike):
        path = Path(translator)
        if path.is_dir():
            return _from_saved_model(path, input_name, output_name, signature)
        if not path.exists():
            raise DataError(f"translator not found: {path}")
        if path.suffix != ".keras":
            raise DataError(f"translator {path}: expected a SavedModel directory or a .keras file")
        from tfface.keras_files import load_keras_file

        model = load_keras_file(path, "translator")  # safe_mode=True; one-line DataError naming the file
        return _from_keras(model, output_name, str(path))
    import keras

    if isinstance(translator, keras.Model):
        return _from_keras(translator, output_name, f"Keras model {getattr(translator, 'name', '?')!r}")
    if callable(translator):
        return Translator(translator, input_dim, None, getattr(translator, "__name__", type(translator).__name__))
    raise ConfigError(f"translator: expected a path, a Keras model or a callable, got {type(translator).__name__}")


def _row_members(z: zipfile.ZipFile, n: int, where: str) -> list[str]:
    names = z.namelist()
    if "labels.npy" not in names:
        raise DataError(f"{where}: missing field 'labels' (the file has {sorted(m[:-4] for m in names)})")
    members = []
    for field in _ROW_FIELDS:
        name = f"{field}.npy"
        if name not in names:
            continue
        shape, _, dtype = member_header(z, name, where)
        if shape != (n,):
            raise DataError(f"{where}: field '{field}' has shape {shape}, expected ({n},) like 'features'")
        if dtype.hasobject:
            raise DataError(f"{where}: field '{field}' holds Python objects (pickled); not a feature file")
        members.append(name)
    return members


def _normalise(y: np.ndarray, row0: int, source: str) -> np.ndarray:
    norms = np.linalg.norm(y.astype(np.float64), axis=1)
    zero = norms == 0
    if zero.any():
        raise DataError(f"translator {source}: output row {row0 + int(np.argmax(zero))} has zero norm; "
                        "cannot L2-normalise it")
    return (y / norms[:, None]).astype(np.float32)


def translate_blocks(translator: Translator, blocks, row0: int = 0, normalize: bool = True):
    """Yield the translated (and normalised) block of each input block; NaN/Inf outputs raise, naming the row."""
    for block in blocks:
        y = translator(block)
        bad = ~np.isfinite(y).all(axis=1)
        if bad.any():
            raise DataError(f"translator {translator.source}: output has NaN/Inf at row {row0 + int(np.argmax(bad))}")
        yield _normalise(y, row0, translator.source) if normalize else y
        row0 += len(block)


def translate_features(translator: Any, in_path: str | os.PathLike, out_path: str | os.PathLike,
                       batch_size: int = 65536, progress: bool = True, normalize: bool = True,
                       input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME,
                       signature: str = "serving_default") -> TranslateReport:
    """Translate the ``features`` of ``in_path`` and write ``out_path`` with the same labels/ids/paths.

    Streamed in blocks of ``batch_size`` rows (see the module docstring); the output rows are L2-normalised
    unless ``normalize=False``. Raises :class:`DataError` (naming the file, field, row or shape) for a missing
    or malformed input, a ``features`` dimension other than the translator's input, NaN/Inf input or output
    rows, and a translator that is not a SavedModel / lacks ``input_name``; nothing is written then.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
    from tfface.data.features import iter_feature_batches

    src, out = Path(in_path), Path(out_path)
    if src.resolve() == out.resolve():
        raise ConfigError(f"translate: the output {out} is the input; write to a new file")
    n, d = feature_file_shape(src)
    tr = load_translator(translator, input_name, output_name, signature)
    if tr.input_dim is not None and d != tr.input_dim:
        raise DataError(f"{src}: field 'features' has dimension {d} (shape ({n}, {d})), but translator "
                        f"{tr.source} takes {input_name!r} of shape [None, {tr.input_dim}]")
    t0 = time.perf_counter()
    with zipfile.ZipFile(src) as zin:
        members = _row_members(zin, n, str(src))
        blocks = iter_feature_batches(src, int(batch_size))
        translated = translate_blocks(tr, blocks, 0, normalize)
        first = next(translated, None)
        if first is None:  # an empty file: learn Dt from one dummy row
            dt = tr.output_dim or tr(np.zeros((1, d), np.float32)).shape[1]
            first = np.zeros((0, dt), np.float32)
        dt = int(first.shape[1])
        check_free_space(out, _output_bytes(zin, members, n, dt))
        from tqdm import tqdm

        with atomic_path(out, suffix=".npz") as tmp, \
                zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zout, \
                tqdm(total=n, unit="vec", desc=f"translating {src.name}", disable=not progress) as bar:
            with zout.open("features.npy", "w", force_zip64=True) as f:
                header = {"descr": npformat.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
                          "shape": (n, dt)}
                npformat.write_array_header_1_0(f, header)
                written = 0
                for y in _chain(first, translated):
                    if y.shape[1] != dt:
                        raise DataError(f"translator {tr.source}: output dimension changed from {dt} to "
                                        f"{y.shape[1]} at row {written}")
                    f.write(np.ascontiguousarray(y, dtype="<f4").tobytes())
                    written += len(y)
                    bar.update(len(y))
            if written != n:
                raise DataError(f"{src}: field 'features' yielded {written} rows, its header says {n}")
            for name in members:
                with zin.open(name) as fin, zout.open(name, "w", force_zip64=True) as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
    return TranslateReport(out, n, d, dt, time.perf_counter() - t0, tr.source)


def _output_bytes(zin: zipfile.ZipFile, members: list[str], n: int, dt: int) -> int:
    """An upper bound on the size of the output zip: the float32 features, the copied members, zip headers."""
    per_member = 1024  # local + central headers with zip64 extras, and the .npy header of features
    return n * dt * 4 + sum(zin.getinfo(m).file_size for m in members) + per_member * (len(members) + 2)


def _chain(first: np.ndarray, rest):
    if len(first):
        yield first
    yield from rest
