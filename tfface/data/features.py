"""Feature files: embeddings and their labels in one ``.npz``.

Fields: ``features`` float32 [N, D], ``labels`` int64 [N], optional ``ids`` [N] (int or str) and
optional ``paths`` [N] (str). Files are written uncompressed (``np.savez``) and atomically, so
:func:`iter_feature_batches` can memory-map ``features`` straight from the zip member and stream it in
row slices: a gallery of millions of vectors is never loaded whole. Loading never unpickles
(``allow_pickle=False``); every error names the file and the field.

Example::

    save_features("gallery.npz", emb, labels, paths=image_paths)
    fs = load_features("gallery.npz", expected_dim=512)    # fs.features, fs.labels, fs.dim, len(fs)
    for block in iter_feature_batches("gallery.npz", 65536):
        ...
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

from tfface.atomic import atomic_path
from tfface.errors import DataError

FIELDS = ("features", "labels", "ids", "paths")


@dataclass
class FeatureSet:
    """The fields of a feature file: ``features`` float32 [N, D], ``labels`` int64 [N], ``ids``/``paths`` or None."""

    features: np.ndarray
    labels: np.ndarray
    ids: np.ndarray | None = None
    paths: np.ndarray | None = None

    @property
    def dim(self) -> int:
        """The feature dimension D."""
        return int(self.features.shape[1])

    def __len__(self) -> int:
        return len(self.features)


def _check_finite(block: np.ndarray, where: str, row0: int = 0) -> None:
    bad = ~np.isfinite(block).all(axis=1)
    if bad.any():
        raise DataError(f"{where}: field 'features' has NaN/Inf in {int(bad.sum())} rows "
                        f"(first at row {row0 + int(np.argmax(bad))})")


def _check_features(features: np.ndarray, where: str, expected_dim: int | None, allow_nonfinite: bool) -> None:
    if features.ndim != 2:
        raise DataError(f"{where}: field 'features' must be 2-D (N, D), got shape {features.shape}")
    if not np.issubdtype(features.dtype, np.floating):
        raise DataError(f"{where}: field 'features' must be floating point, got {features.dtype}")
    if expected_dim is not None and features.shape[1] != expected_dim:
        raise DataError(f"{where}: field 'features' has dimension {features.shape[1]}, expected {expected_dim}")
    if not allow_nonfinite:
        _check_finite(features, where)


def _check_rows(n: int, labels: np.ndarray, ids: np.ndarray | None, paths: np.ndarray | None, where: str) -> None:
    if labels.ndim != 1 or len(labels) != n:
        raise DataError(f"{where}: field 'labels' has shape {labels.shape}, expected ({n},) like 'features'")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: field 'labels' must be integers, got {labels.dtype}")
    for name, arr, kinds in (("ids", ids, "iuUS"), ("paths", paths, "US")):
        if arr is None:
            continue
        if arr.ndim != 1 or len(arr) != n:
            raise DataError(f"{where}: field '{name}' has shape {arr.shape}, expected ({n},) like 'features'")
        if arr.dtype.kind not in kinds:
            want = "integers or strings" if name == "ids" else "strings"
            raise DataError(f"{where}: field '{name}' must be {want}, got {arr.dtype}")


def _as_labels(labels, where: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype.kind == "f" and arr.size and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)  # 1.0, 2.0 ... are fine; 1.5 is not
    if arr.dtype.kind not in "iu":
        raise DataError(f"{where}: field 'labels' must be integers, got {arr.dtype}")
    return arr.astype(np.int64)


def save_features(path: str | os.PathLike, features, labels, ids=None, paths=None) -> Path:
    """Validate and write a feature file (uncompressed ``.npz``, atomic); returns ``path``.

    ``features`` [N, D] (stored float32, must be finite), ``labels`` [N] integers, ``ids`` [N] ints or
    strings, ``paths`` [N] (stored as strings). Nothing is written when a field is invalid.
    """
    where = str(path)
    try:
        features = np.asarray(features)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: field 'features' is not an array ({e})") from e
    if not (np.issubdtype(features.dtype, np.floating) or np.issubdtype(features.dtype, np.integer)):
        raise DataError(f"{where}: field 'features' must be numeric, got {features.dtype}")
    features = features.astype(np.float32)
    _check_features(features, where, None, False)
    labels = _as_labels(labels, where)
    ids = None if ids is None else np.asarray(ids)
    if ids is not None and ids.dtype.kind in "iu":
        ids = ids.astype(np.int64)
    paths = None if paths is None else np.asarray([os.fspath(p) for p in paths], dtype=str)
    _check_rows(len(features), labels, ids, paths, where)
    arrays = {"features": features, "labels": labels}
    if ids is not None:
        arrays["ids"] = ids
    if paths is not None:
        arrays["paths"] = paths
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return Path(path)


def safe_reason(e: BaseException) -> str:
    """The text of a numpy/zip read error, without numpy's hint to load pickled data unsafely."""
    text = str(e)
    if "pickle" in text:
        return "it holds pickled Python objects, which tfface never loads"
    return text


def open_npz(path: str | os.PathLike, what: str = "npz file") -> np.lib.npyio.NpzFile:
    """``np.load(path, allow_pickle=False)`` as an open :class:`~numpy.lib.npyio.NpzFile`.

    A file that is not a zip archive of ``.npy`` members (a text file, a single ``.npy``, a pickle) raises
    :class:`DataError` naming the file and ``what`` was expected; no message points to unsafe loading.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} not found: {p}")
    try:
        is_zip = zipfile.is_zipfile(p)
    except OSError as e:
        raise DataError(f"{p}: cannot be read ({e})") from e
    if not is_zip:
        raise DataError(f"{p}: not an .npz {what} (not a zip archive of .npy arrays)")
    try:
        d = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{p}: not a readable {what} ({safe_reason(e)})") from e
    if not isinstance(d, np.lib.npyio.NpzFile):
        raise DataError(f"{p}: not an .npz {what} (it holds a single array)")
    return d


def load_features(path: str | os.PathLike, expected_dim: int | None = None,
                  allow_nonfinite: bool = False) -> FeatureSet:
    """Read and validate a feature file; errors name the file and field (and both dimensions).

    Raises :class:`DataError` for a missing file or field, ``features`` not 2-D or of dimension
    other than ``expected_dim``, NaN/Inf rows (unless ``allow_nonfinite``; the message says how many
    and the first row), fields of different lengths, or object/pickled fields.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"feature file not found: {p}")
    arrays: dict[str, np.ndarray] = {}
    try:
        with open_npz(p, "feature file") as d:
            for name in FIELDS:
                if name not in d.files:
                    continue
                try:
                    arrays[name] = d[name]
                except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
                    raise DataError(f"{p}: field '{name}' cannot be read ({safe_reason(e)})") from e
            names = sorted(d.files)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{p}: not a readable feature file ({safe_reason(e)})") from e
    if "features" not in arrays:
        raise DataError(f"{p}: missing field 'features' (the file has {names})")
    if "labels" not in arrays:
        raise DataError(f"{p}: missing field 'labels' (the file has {names})")
    features = arrays["features"]
    _check_features(features, str(p), expected_dim, allow_nonfinite)
    ids, paths = arrays.get("ids"), arrays.get("paths")
    _check_rows(len(features), arrays["labels"], ids, paths, str(p))
    return FeatureSet(features.astype(np.float32, copy=False), arrays["labels"].astype(np.int64), ids, paths)


def _member_data_offset(f, info: zipfile.ZipInfo) -> int:
    """Byte offset in the zip file of the first byte of a stored member's data."""
    f.seek(info.header_offset)
    local = f.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise ValueError(f"bad local zip header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = npformat.read_magic(f)
    if version == (1, 0):
        return npformat.read_array_header_1_0(f)
    if version == (2, 0):
        return npformat.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy format version {version}")


def member_header(z: zipfile.ZipFile, name: str, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` member ``name`` of an open npz, header only."""
    try:
        with z.open(name) as f:
            return _read_npy_header(f)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{where}: field '{name[:-4]}' has no valid .npy header ({e})") from e


def feature_file_shape(path: str | os.PathLike) -> tuple[int, int]:
    """``(N, D)`` of a feature file's ``features``, from its ``.npy`` header only (nothing is loaded)."""
    p = Path(path)
    with _open_feature_zip(p) as z:
        shape, _, dtype = member_header(z, "features.npy", str(p))
    _check_feature_header(p, shape, False, dtype)
    return int(shape[0]), int(shape[1])


def _open_feature_zip(p: Path) -> zipfile.ZipFile:
    """The feature file as an open zip that has a ``features`` member; clear errors otherwise."""
    if not p.is_file():
        raise DataError(f"feature file not found: {p}")
    try:
        z = zipfile.ZipFile(p)
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError(f"{p}: not a readable feature file ({e})") from e
    if "features.npy" not in z.namelist():
        z.close()
        raise DataError(f"{p}: missing field 'features' (the file has {sorted(n[:-4] for n in z.namelist())})")
    return z


def _check_feature_header(p: Path, shape: tuple, fortran: bool, dtype: np.dtype) -> None:
    if len(shape) != 2:
        raise DataError(f"{p}: field 'features' must be 2-D (N, D), got shape {shape}")
    if fortran or not np.issubdtype(dtype, np.floating):
        raise DataError(f"{p}: field 'features' must be a C-ordered floating array, got "
                        f"{dtype}{' (Fortran order)' if fortran else ''}")


def iter_feature_batches(path: str | os.PathLike, batch_size: int = 65536, expected_dim: int | None = None,
                         allow_nonfinite: bool = False) -> Iterator[np.ndarray]:
    """Yield ``features`` as float32 row blocks of at most ``batch_size`` rows, without loading it whole.

    Files written by :func:`save_features` are uncompressed: the ``features`` member is memory-mapped
    (``np.memmap``, read-only) at its offset inside the zip and sliced. A compressed npz
    (``np.savez_compressed``) is streamed through the zip decompressor instead. The header is
    checked before the first block (2-D float, ``expected_dim``); NaN/Inf raise :class:`DataError`
    with the global row index when the block containing them is reached.
    """
    p = Path(path)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DataError(f"{p}: batch_size must be a positive integer, got {batch_size!r}")
    with _open_feature_zip(p) as z:
        info = z.getinfo("features.npy")
        try:
            with z.open(info) as member:
                shape, fortran, dtype = _read_npy_header(member)
                header_len = member.tell()
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise DataError(f"{p}: field 'features' has no valid .npy header ({e})") from e
        _check_feature_header(p, shape, fortran, dtype)
        if expected_dim is not None and shape[1] != expected_dim:
            raise DataError(f"{p}: field 'features' has dimension {shape[1]}, expected {expected_dim}")
        n, d = shape
        row_bytes = d * dtype.itemsize
        if info.compress_type == zipfile.ZIP_STORED:
            with open(p, "rb") as raw:
                start = _member_data_offset(raw, info) + header_len
            if info.file_size < header_len + n * row_bytes:
                raise DataError(f"{p}: field 'features' is truncated ({info.file_size} bytes for shape {shape})")
            if n == 0 or d == 0:
                return
            mm = np.memmap(p, dtype=dtype, mode="r", offset=start, shape=(n, d))
            for row in range(0, n, batch_size):
                block = np.array(mm[row : row + batch_size], np.float32)
                if not allow_nonfinite:
                    _check_finite(block, str(p), row)
                yield block
            del mm
            return
        with z.open(info) as member:
            member.read(header_len)
            for row in range(0, n, batch_size):
                rows = min(batch_size, n - row)
                buf = member.read(rows * row_bytes)
                if len(buf) != rows * row_bytes:
                    raise DataError(f"{p}: field 'features' is truncated at row {row}")
                block = np.frombuffer(buf, dtype=dtype).reshape(rows, d).astype(np.float32)
                if not allow_nonfinite:
                    _check_finite(block, str(p), row)
                yield block
