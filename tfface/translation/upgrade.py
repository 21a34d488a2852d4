"""Upgrade a gallery index to a new embedding model without its images: translate the stored vectors.

An :class:`~tfface.retrieval.index.Index` directory keeps every gallery vector (``vectors.npy``, float32,
normalised) with its id. When the recognition model is replaced, a translator (R3AN, or any model mapping
old-model features to new-model features, see :mod:`tfface.translation.translate`) turns those vectors into the new
model's space; :func:`upgrade_gallery` does that in streamed blocks and builds a new index over the result:

1. load the old index (checksums verified; ``vectors.npy`` memory-mapped, its ScaNN searcher not loaded);
2. translate ``vectors.npy`` block by block into a temporary ``.npy`` beside the output (ordinary chunked
   writes after a free-space check, never a writable memmap: a full disk is an ``OSError``, not SIGBUS),
   L2-normalising each translated row (NaN/Inf or zero rows raise, naming the row and its id);
3. build a new :class:`Index` with the same ids (same id kind), the same metric, the backend asked for and
   the ScaNN configuration the size rules give for the new size and dimension (:func:`choose_config`; only
   the old index's dimension-free choices ``reorder_dtype`` and ``search_threads`` are carried over);
4. save it to ``out_dir`` atomically (a temporary directory renamed into place), holding the output's
   index lock (:func:`~tfface.retrieval.locking.index_lock`) while checking it and saving.

Queries must then be embedded with the new model. Example::

    from tfface.translation.upgrade import upgrade_gallery
    info = upgrade_gallery("runs/export/translator", "runs/index/gallery", "runs/index/gallery_v2")
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from tfface.atomic import temp_dir
from tfface.errors import ConfigError, DataError
from tfface.retrieval.locking import DEFAULT_LOCK_TIMEOUT

__all__ = ["upgrade_gallery"]

_CARRIED = ("reorder_dtype", "search_threads")


def upgrade_gallery(translator: Any, old_index_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                    backend: str | None = None, config: dict[str, Any] | None = None, batch_size: int = 65536,
                    overwrite: bool = False, progress: bool = True, input_name: str = "source_features",
                    output_name: str = "target_features", signature: str = "serving_default",
                    lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> dict[str, Any]:
    """Translate the vectors of the index at ``old_index_dir`` and save a new index at ``out_dir``.

    Args:
        translator: a SavedModel dir, a ``.keras`` file, a Keras model or a callable (:func:`load_translator`).
        backend: ``"scann"`` or ``"exact"`` (default: the old index's).
        config: ScaNN overrides for the new index (default: the size rules, plus the carried-over choices).
        batch_size: rows translated per block.
        overwrite: replace an existing index directory at ``out_dir``.
        lock_timeout: seconds to wait for another writer of ``out_dir`` before the save.

    Returns a summary dict (counts, dimensions, backend, config; load/translate/build seconds). Raises :class:`DataError` when the
    old index is missing or damaged, its dimension is not the translator's input, a translated row is not
    finite, or ``out_dir`` exists (without ``overwrite``); nothing is written then.
    """
    from tfface.retrieval.index import Index
    from tfface.retrieval.locking import index_lock
    from tfface.retrieval.manifest import read_manifest
    from tfface.retrieval.persistence import write_npy
    from tfface.translation.translate import load_translator, translate_blocks

    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
    old_dir, out = Path(old_index_dir), Path(out_dir)
    if out.exists() and out.resolve() == old_dir.resolve():
        raise ConfigError(f"upgrade-gallery: the output {out} is the old index; write to a new directory")
    _check_target(out, overwrite)
    t0 = time.perf_counter()
    old = Index.load(old_dir, backend="exact", mmap=True)  # verifies checksums; no ScaNN searcher loaded
    old_backend = read_manifest(old_dir)["backend"]
    if len(old) == 0:
        raise DataError(f"{old_dir}: the index is empty; nothing to upgrade")
    tr = load_translator(translator, input_name, output_name, signature)
    if tr.input_dim is not None and tr.input_dim != old.dim:
        raise DataError(f"{old_dir}: vectors have dimension {old.dim}, but translator {tr.source} takes "
                        f"{input_name!r} of shape [None, {tr.input_dim}]")
    t_load = time.perf_counter() - t0
    ids = old.ids
    vectors = np.load(old_dir / "vectors.npy", mmap_mode="r", allow_pickle=False)  # rows in the order of ids
    n = len(ids)
    if vectors.shape != (n, old.dim):
        raise DataError(f"{old_dir / 'vectors.npy'}: shape {vectors.shape}, expected ({n}, {old.dim})")

    overrides = {k: v for k, v in old.config_overrides.items() if k in _CARRIED}
    overrides.update(config or {})
    from tqdm import tqdm

    work = temp_dir(out, "translate")
    try:
        blocks = (np.asarray(vectors[i : i + batch_size], np.float32) for i in range(0, n, batch_size))
        row = 0
        with tqdm(total=n, unit="vec", desc=f"translating {old_dir.name}", disable=not progress) as bar:

            def counted():
                nonlocal row
                for y in translate_blocks(tr, blocks, 0, normalize=True):
                    yield y
                    row += len(y)
                    bar.update(len(y))

            try:
                stream = counted()
                first = next(stream)
                write_npy(work / "translated.npy", itertools.chain([first], stream), (n, first.shape[1]))
            except DataError as e:
                at = min(row, n - 1)
                raise DataError(f"{old_dir}: {e} (in the block from index row {at}, id {ids[at]!r})") from e
        new = np.load(work / "translated.npy", mmap_mode="r", allow_pickle=False)  # read-only
        t_translate = time.perf_counter() - t0 - t_load
        index = Index.build(new, ids, metric=old.metric, backend=backend or old_backend, config=overrides,
                            progress=progress)
        del new
        t_build = time.perf_counter() - t0 - t_load - t_translate
        with index_lock(out, lock_timeout):
            _check_target(out, overwrite)  # again: another writer may have made it meanwhile
            index.save(out, progress=progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "old_index": str(old_dir), "index": str(out), "translator": tr.source, "count": len(index),
        "old_dim": old.dim, "dim": index.dim, "metric": index.metric, "backend": index.backend,
        "id_kind": index.id_kind, "config": index.config.to_dict() if index.config else None,
        "load_seconds": round(t_load, 2), "translate_seconds": round(t_translate, 2), "build_seconds": round(t_build, 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise DataError(f"{out}: exists; pass overwrite=True (--overwrite) to replace it")
