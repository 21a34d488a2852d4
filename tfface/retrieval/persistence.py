"""Reading and writing an index directory (see :mod:`tfface.retrieval.index` for its layout).

Writers never memory-map their output: a memory-mapped file on a full disk kills the process with
SIGBUS, leaving its temporary behind. :func:`write_npy` writes the ``.npy`` header and then the rows in
chunks with ordinary file writes (a full disk is then an ``OSError``, ENOSPC), after checking the free
space for the known size up front (:func:`~tfface.atomic.check_free_space`), and removes the partial file
on any failure. The manifest (checksums, settings) is :mod:`tfface.retrieval.manifest`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npformat

from tfface.atomic import check_free_space
from tfface.errors import DataError
from tfface.retrieval.manifest import MANIFEST_NAME, read_manifest, verify_files
from tfface.retrieval.rows import chunks

__all__ = [
    "SavedIndex",
    "check_save_target",
    "load_npy",
    "npy_bytes",
    "read_arrays",
    "read_index_dir",
    "write_arrays",
    "write_npy",
]

_HEADER_BYTES = 128  # a 1.0 .npy header of a 1-D or 2-D array (padded to 64 bytes) never exceeds this


def npy_bytes(shape: tuple[int, ...], dtype: Any) -> int:
    """An upper bound on the size of a ``.npy`` file of ``shape`` and ``dtype``."""
    return _HEADER_BYTES + math.prod(shape) * np.dtype(dtype).itemsize


def _write_chunk(f, buf: np.ndarray) -> None:
    f.write(buf.reshape(-1).view(np.uint8))


def write_npy(path: str | os.PathLike, blocks: Iterable[np.ndarray], shape: tuple[int, ...],
              dtype: Any = np.float32) -> Path:
    """Write the ``.npy`` file ``path`` of ``shape`` from row ``blocks`` (their rows in order), without a memmap.

    Raises :class:`~tfface.atomic.InsufficientSpaceError` before writing when the file cannot fit,
    :class:`DataError` when the blocks do not add up to ``shape``; ``path`` is removed on any failure.
    """
    path = Path(path)
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    check_free_space(path, npy_bytes(shape, dtype))
    header = {"descr": npformat.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    try:
        with open(path, "wb") as f:
            npformat.write_array_header_1_0(f, header)
            written = 0
            for block in blocks:
                if block.shape[1:] != shape[1:] or written + block.shape[0] > shape[0]:
                    raise DataError(f"{path}: a block of shape {block.shape} does not fit an array of shape {shape} "
                                    f"after {written} rows")
                for sl in chunks(block.shape[0]):
                    _write_chunk(f, np.ascontiguousarray(block[sl], dtype=dtype))
                written += block.shape[0]
            if written != shape[0]:
                raise DataError(f"{path}: {written} rows written, the header says {shape[0]}")
    except OSError as err:
        path.unlink(missing_ok=True)
        if err.filename is None:  # a failed write (ENOSPC, EIO) names no file: name this one
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def load_npy(path: Path, mmap: bool) -> np.ndarray:
    """Read a ``.npy`` file (no pickles), memory-mapped read-only if ``mmap``; ``DataError`` naming it otherwise."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: cannot read the array ({err})") from err


def check_save_target(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path``, unless it is a file or a non-empty directory that is not an index (``DataError``)."""
    target = Path(path)
    if target.exists():
        if not target.is_dir():
            raise DataError(f"{target}: exists and is not a directory")
        if any(target.iterdir()) and not (target / MANIFEST_NAME).is_file():
            raise DataError(f"{target}: a non-empty directory that is not a tfface index; refusing to replace it")
    return target


def write_arrays(directory: Path, blocks: list[np.ndarray], rows: int, dim: int, ids: np.ndarray) -> None:
    """``vectors.npy`` (``[rows, dim]`` float32 from ``blocks``) and ``ids.npy`` into ``directory``."""
    write_npy(directory / "vectors.npy", blocks, (rows, dim), np.float32)
    write_npy(directory / "ids.npy", [ids], ids.shape, ids.dtype)


@dataclass
class SavedIndex:
    """An index directory read and checked: its manifest and arrays (the searcher is not loaded)."""

    root: Path
    manifest: dict[str, Any]
    dim: int
    count: int
    searcher_rows: int
    vectors: np.ndarray
    ids: np.ndarray

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME


def read_index_dir(path: str | os.PathLike, *, verify: bool = True) -> SavedIndex:
    """Read and check an index directory's manifest and file sizes (and checksums if ``verify``).

    The arrays are read by :func:`read_arrays`."""
    root = Path(path)
    man = read_manifest(root)
    verify_files(root, man, checksums=verify)
    where = root / MANIFEST_NAME
    try:
        dim, count = int(man["dim"]), int(man["count"])
        s_rows = int(man.get("searcher_rows", 0))
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: dim/count/searcher_rows must be integers ({err})") from err
    return SavedIndex(root, man, dim, count, s_rows, np.zeros((0, dim), np.float32), np.zeros(0, np.int64))


def read_arrays(saved: SavedIndex, mmap: bool) -> None:
    """Load ``vectors.npy`` and ``ids.npy`` of ``saved`` and check them against its manifest."""
    root, count, dim = saved.root, saved.count, saved.dim
    vectors = load_npy(root / "vectors.npy", mmap)
    ids = load_npy(root / "ids.npy", False)
    if vectors.dtype != np.float32 or vectors.shape != (count, dim):
        raise DataError(
            f"{root / 'vectors.npy'}: expected float32 of shape {(count, dim)}, got {vectors.dtype} {vectors.shape}"
        )
    if ids.shape != (count,) or ids.dtype.kind not in "iU":
        raise DataError(f"{root / 'ids.npy'}: expected {count} int64 or string ids, got {ids.dtype} {ids.shape}")
    if not 0 <= saved.searcher_rows <= count:
        raise DataError(f"{saved.manifest_path}: searcher_rows {saved.searcher_rows} outside [0, {count}]")
    saved.vectors, saved.ids = vectors, ids
