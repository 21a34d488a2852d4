"""Export a gallery for a managed vector engine, in files of bounded size.

* **Vertex AI Vector Search** (batch build or update): JSON Lines files ``embeddings-00000.json`` ...
  directly in the output directory (Vertex reads every ``.json`` file under the batch root, one record
  per line: ``{"id": "<string>", "embedding": [floats]}``; at most 5000 files per batch root). Floats
  are written with 9 significant digits, which round-trips float32 exactly.
* **Milvus** bulk import: column files per shard. ``npy``: ``part-00000/id.npy`` and
  ``part-00000/embedding.npy`` (one NumPy file per field, named after the field); ``parquet``:
  ``part-00000.parquet`` with the columns ``id`` and ``embedding`` (needs ``pyarrow``). A
  ``milvus_files.json`` beside them lists the shards in the ``files=[[...], ...]`` shape of
  ``bulk_import``.

Every file stays at or below ``max_file_bytes``. The output directory is written atomically.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tfface.atomic import atomic_dir
from tfface.errors import ConfigError, DataError

__all__ = ["DEFAULT_MAX_FILE_BYTES", "export_index", "export_milvus", "export_vertex", "parquet_available"]

DEFAULT_MAX_FILE_BYTES = 512 * 2**20
"""Default bound on each exported file (512 MiB)."""
_VERTEX_MAX_FILES = 5000


def parquet_available() -> bool:
    """Whether ``pyarrow`` can be imported (needed for Milvus Parquet export)."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _check(vectors: np.ndarray, ids: np.ndarray, max_file_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(vectors)
    i = np.asarray(ids)
    if v.ndim != 2 or v.dtype.kind != "f":
        raise DataError(f"vectors: expected a float [N, D] array, got {v.dtype} {v.shape}")
    if i.shape != (v.shape[0],) or i.dtype.kind not in "iuU":
        raise DataError(f"ids: expected {v.shape[0]} integer or string ids, got {i.dtype} {i.shape}")
    if isinstance(max_file_bytes, bool) or not isinstance(max_file_bytes, int | np.integer) or max_file_bytes < 1:
        raise ConfigError(f"max_file_bytes: expected a positive integer, got {max_file_bytes!r}")
    if not np.isfinite(v).all():
        raise DataError("vectors: contain NaN or Inf")
    return v, i


def _guard_target(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"{out_dir}: exists and is not empty; choose a new output directory")


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="vec")


def export_vertex(
    vectors: np.ndarray,
    ids: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    digits: int = 9,
    progress: bool = False,
) -> list[Path]:
    """Write ``{"id": str, "embedding": [...]}`` JSON Lines shards for Vertex AI Vector Search.

    Returns the shard paths (inside ``out_dir`` once complete). A single record larger than
    ``max_file_bytes`` raises ``ConfigError``.
    """
    v, i = _check(vectors, ids, max_file_bytes)
    out_dir = Path(out_dir)
    _guard_target(out_dir)
    names: list[str] = []
    bar = _bar(v.shape[0], "vertex export", progress)
    fmt = f"{{:.{int(digits)}g}}"
    with atomic_dir(out_dir) as tmp:
        f = None
        size = 0
        try:
            for row in range(v.shape[0]):
                emb = ",".join(fmt.format(val) for val in v[row].tolist())
                line = (json.dumps({"id": str(i[row].item())})[:-1] + f', "embedding": [{emb}]}}\n').encode()
                if len(line) > max_file_bytes:
                    raise ConfigError(
                        f"max_file_bytes: {max_file_bytes} is smaller than one record ({len(line)} bytes)"
                    )
                if f is None or size + len(line) > max_file_bytes:
                    if f is not None:
                        f.close()
                    names.append(f"embeddings-{len(names):05d}.json")
                    if len(names) > _VERTEX_MAX_FILES:
                        raise ConfigError(
                            f"max_file_bytes: {max_file_bytes} gives more than {_VERTEX_MAX_FILES} files, "
                            "Vertex's limit per batch root; raise it"
                        )
                    f = open(tmp / names[-1], "wb")
                    size = 0
                f.write(line)
                size += len(line)
                if bar is not None and row % 4096 == 4095:
                    bar.update(4096)
        finally:
            if f is not None:
                f.close()
            if bar is not None:
                bar.close()
    return [out_dir / n for n in names]


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _rows_per_shard(v: np.ndarray, i: np.ndarray, max_file_bytes: int, header: int) -> int:
    per_row = max(v.shape[1] * 4, i.dtype.itemsize)
    rows = (max_file_bytes - header) // per_row
    if rows < 1:
        raise ConfigError(f"max_file_bytes: {max_file_bytes} is smaller than one record ({per_row + header} bytes)")
    return int(rows)


def export_milvus(
    vectors: np.ndarray,
    ids: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    file_format: str = "npy",
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    id_field: str = "id",
    vector_field: str = "embedding",
    progress: bool = False,
) -> list[list[Path]]:
    """Write Milvus bulk-import shards (``npy`` columns or ``parquet``); returns the files of each shard."""
    v, i = _check(vectors, ids, max_file_bytes)
    if file_format not in ("npy", "parquet"):
        raise ConfigError(f"file_format: expected 'npy' or 'parquet', got {file_format!r}")
    if file_format == "parquet" and not parquet_available():
        raise ConfigError("file_format 'parquet' needs pyarrow (not installed); use file_format='npy'")
    out_dir = Path(out_dir)
    _guard_target(out_dir)
    v = v.astype(np.float32, copy=False)
    i = i.astype(np.int64) if i.dtype.kind in "iu" else i
    rows = _rows_per_shard(v, i, max_file_bytes, header=128 if file_format == "npy" else 64 * 1024)
    shards: list[list[str]] = []
    bar = _bar(v.shape[0], "milvus export", progress)
    with atomic_dir(out_dir) as tmp:
        for n, start in enumerate(range(0, v.shape[0], rows)):
            sl = slice(start, start + rows)
            if file_format == "npy":
                part = tmp / f"part-{n:05d}"
                part.mkdir()
                files = []
                for field, arr in ((id_field, i[sl]), (vector_field, np.ascontiguousarray(v[sl]))):
                    data = _npy_bytes(arr)
                    if len(data) > max_file_bytes:  # pragma: no cover - rows per shard is bounded above
                        raise ConfigError(f"max_file_bytes: shard file {len(data)} bytes exceeds {max_file_bytes}")
                    (part / f"{field}.npy").write_bytes(data)
                    files.append(f"{part.name}/{field}.npy")
                shards.append(files)
            else:
                name = f"part-{n:05d}.parquet"
                _write_parquet(tmp / name, i[sl], v[sl], id_field, vector_field)
                if (tmp / name).stat().st_size > max_file_bytes:
                    raise ConfigError(
                        f"max_file_bytes: {name} came out at {(tmp / name).stat().st_size} bytes, above "
                        f"{max_file_bytes}; lower the bound's share per shard or use npy"
                    )
                shards.append([name])
            if bar is not None:
                bar.update(v[sl].shape[0])
        (tmp / "milvus_files.json").write_text(json.dumps({"files": shards, "id_field": id_field,
                                                           "vector_field": vector_field, "dim": int(v.shape[1]),
                                                           "count": int(v.shape[0])}, indent=2) + "\n")
    if bar is not None:
        bar.close()
    return [[out_dir / f for f in files] for files in shards]


def _write_parquet(path: Path, ids: np.ndarray, vectors: np.ndarray, id_field: str, vector_field: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = vectors.shape[1]
    flat = pa.array(np.ascontiguousarray(vectors).reshape(-1), type=pa.float32())
    emb = pa.FixedSizeListArray.from_arrays(flat, dim)
    id_arr = pa.array(ids.tolist(), type=pa.string() if ids.dtype.kind == "U" else pa.int64())
    pq.write_table(pa.table({id_field: id_arr, vector_field: emb}), path)


def export_index(index: Any, out_dir: str | os.PathLike, fmt: str, **kwargs: Any) -> list:
    """Export the live entries of a :class:`~tfface.retrieval.Index`: ``fmt`` is ``"vertex"`` or ``"milvus"``."""
    if fmt == "vertex":
        return export_vertex(index.vectors(), index.ids, out_dir, **kwargs)
    if fmt == "milvus":
        return export_milvus(index.vectors(), index.ids, out_dir, **kwargs)
    raise ConfigError(f"format: expected 'vertex' or 'milvus', got {fmt!r}")
