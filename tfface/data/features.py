"""Feature files: ``.npz`` with ``features`` float32 [N, D], ``labels`` int64 [N], optional ``ids`` [N]
(int or str) and ``paths`` [N] (str).

Files are written uncompressed (``np.savez``), atomically, so :func:`iter_feature_batches` can stream
``features`` from disk in slices (a gallery of millions of vectors is never loaded whole). Loading never
unpickles (``allow_pickle=False``); every error names the file and the field.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

from tfface.atomic import atomic_path
from tfface.errors import DataError


@dataclass
class FeatureSet:
    features: np.ndarray
    labels: np.ndarray
    ids: np.ndarray | None = None
    paths: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def __len__(self) -> int:
        return len(self.features)


def _check(features, labels, ids, paths, where: str, expected_dim: int | None, allow_nonfinite: bool):
    if features.ndim != 2:
        raise DataError(f"{where}: field 'features' must be 2-D (N, D), got shape {features.shape}")
    if expected_dim is not None and features.shape[1] != expected_dim:
        raise DataError(f"{where}: field 'features' has dimension {features.shape[1]}, expected {expected_dim}")
    if labels is not None and labels.shape != (len(features),):
        raise DataError(f"{where}: field 'labels' has shape {labels.shape}, expected ({len(features)},)")
    for name, arr in (("ids", ids), ("paths", paths)):
        if arr is not None and len(arr) != len(features):
            raise DataError(f"{where}: field '{name}' has {len(arr)} rows, 'features' has {len(features)}")
    if not allow_nonfinite:
        bad = ~np.isfinite(features).all(axis=1)
        if bad.any():
            raise DataError(f"{where}: field 'features' has NaN/Inf in {int(bad.sum())} rows "
                            f"(first at row {int(np.argmax(bad))})")


def save_features(path: str | os.PathLike, features, labels, ids=None, paths=None) -> Path:
    """Validate and write a feature file (uncompressed npz, atomic)."""
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels, np.int64)
    ids = None if ids is None else np.asarray(ids)
    paths = None if paths is None else np.asarray([str(p) for p in paths])
    _check(features, labels, ids, paths, str(path), None, False)
    arrays = {"features": features, "labels": labels}
    if ids is not None:
        arrays["ids"] = ids
    if paths is not None:
        arrays["paths"] = paths
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return Path(path)


def load_features(path: str | os.PathLike, expected_dim: int | None = None,
                  allow_nonfinite: bool = False) -> FeatureSet:
    """Read and validate a feature file; errors name the file, field and shape."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"feature file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as d:
            if "features" not in d.files:
                raise DataError(f"{p}: missing field 'features' (has {sorted(d.files)})")
            features = d["features"]
            labels = d["labels"] if "labels" in d.files else None
            ids = d["ids"] if "ids" in d.files else None
            paths = d["paths"] if "paths" in d.files else None
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{p}: not a readable feature file ({e})") from e
    if labels is None:
        raise DataError(f"{p}: missing field 'labels'")
    _check(features, labels, ids, paths, str(p), expected_dim, allow_nonfinite)
    return FeatureSet(features.astype(np.float32, copy=False), labels.astype(np.int64), ids, paths)


def iter_feature_batches(path: str | os.PathLike, batch_size: int = 65536) -> Iterator[np.ndarray]:
    """Yield ``features`` in row slices read straight from the (uncompressed) npz member."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"feature file not found: {p}")
    with zipfile.ZipFile(p) as z:
        if "features.npy" not in z.namelist():
            raise DataError(f"{p}: missing field 'features'")
        info = z.getinfo("features.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            # Compressed: fall back to loading the member (still no pickle).
            feats = load_features(p).features
            for start in range(0, len(feats), batch_size):
                yield feats[start : start + batch_size]
            return
        with z.open(info) as f:
            version = npformat.read_magic(f)
            header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            shape, fortran, dtype = header(f)
            if len(shape) != 2 or fortran:
                raise DataError(f"{p}: field 'features' must be a C-ordered (N, D) array, got {shape}")
            n, d = shape
            row = d * dtype.itemsize
            for start in range(0, n, batch_size):
                rows = min(batch_size, n - start)
                buf = f.read(rows * row)
                if len(buf) != rows * row:
                    raise DataError(f"{p}: field 'features' is truncated at row {start}")
                yield np.frombuffer(buf, dtype=dtype).reshape(rows, d).astype(np.float32)
