"""Render the built-in face data to a cache and load it back.

A rendered set is one uncompressed ``.npz`` under the cache folder (``$TFFACE_CACHE`` or
``~/.cache/tfface``), named by a hash of its :class:`~tfface.data.synthetic.FaceDataConfig`:
``images`` uint8 (N, S, S, 3), ``labels`` int64 (N,) (0..C-1 within the set), ``identities`` int64 (N,)
(the global identity index, ``identity_offset + label``), ``landmarks5`` float32 (N, 5, 2) in pixels
(ArcFace order: left eye, right eye, nose tip, left and right mouth corners as seen in the image),
one ``nuisance_<name>`` array per nuisance factor (``nuisance_expression`` is (N, 53)), and
``config`` (the JSON of the config). Writes are atomic.

Example::

    from tfface.data.builtin import render_dataset
    from tfface.data.synthetic import FaceDataConfig
    data = render_dataset(FaceDataConfig(num_identities=20, images_per_identity=5, image_size=64))
    data.images.shape, data.nuisance["yaw"][:3]
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tfface.atomic import atomic_path
from tfface.data.features import open_npz, safe_reason
from tfface.data.synthetic import FaceDataConfig, NuisanceConfig, default_model, render_identity
from tfface.errors import DataError

CACHE_FORMAT = 1


@dataclass
class FaceDataset:
    """Images with identity labels, 5-point landmarks and the nuisance parameters of each image."""

    images: np.ndarray
    labels: np.ndarray
    identities: np.ndarray
    landmarks5: np.ndarray
    nuisance: dict[str, np.ndarray]
    config: FaceDataConfig | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def subset(self, index: np.ndarray) -> FaceDataset:
        """Rows selected by a boolean mask or index array (labels are kept, not renumbered)."""
        return FaceDataset(
            self.images[index], self.labels[index], self.identities[index], self.landmarks5[index],
            {k: v[index] for k, v in self.nuisance.items()}, self.config,
        )


def config_to_dict(cfg: FaceDataConfig) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(d: dict) -> FaceDataConfig:
    d = dict(d)
    nz = d.pop("nuisance", {}) or {}
    nz = {k: tuple(v) if isinstance(v, list) else v for k, v in nz.items()}
    return FaceDataConfig(**d, nuisance=NuisanceConfig(**nz))


def cache_key(cfg: FaceDataConfig) -> str:
    blob = json.dumps({"format": CACHE_FORMAT, "config": config_to_dict(cfg)}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    return Path(os.environ.get("TFFACE_CACHE", Path.home() / ".cache" / "tfface"))


@contextlib.contextmanager
def _single_threaded_blas():
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({k: "1" for k in names})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _render_chunk(cfg: FaceDataConfig, identities: list[int]):
    model = default_model()
    return [render_identity(model, cfg, i) for i in identities]


def _assemble(cfg: FaceDataConfig, results: list) -> FaceDataset:
    images = np.concatenate([r[0] for r in results])
    lms = np.concatenate([r[1] for r in results])
    nzs = [nz for r in results for nz in r[2]]
    n = cfg.images_per_identity
    labels = np.repeat(np.arange(cfg.num_identities, dtype=np.int64), n)
    nuisance = {k: np.asarray([nz[k] for nz in nzs]) for k in nzs[0]}
    return FaceDataset(images, labels, labels + cfg.identity_offset, lms.astype(np.float32), nuisance, cfg)


def render_dataset(
    cfg: FaceDataConfig,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    workers: int | None = None,
    progress: bool = True,
) -> FaceDataset:
    """Render ``cfg`` (or load it from the cache), with a progress bar over identities.

    ``workers`` processes render identities in parallel (default: the CPU count, at most 4).
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache / f"faces-{cache_key(cfg)}.npz"
    if use_cache and path.is_file():
        return load_dataset(path)
    if getattr(mp.current_process(), "_inheriting", False):
        # We are a spawned worker re-running an unguarded script's top level while it starts: starting
        # processes here is impossible. Leave quietly; the parent renders in one process instead.
        raise SystemExit("tfface: render_dataset called while a worker process starts (the script has no "
                         "`if __name__ == \"__main__\":` guard); the parent renders without workers")
    workers = workers or min(os.cpu_count() or 1, 4)
    ids = list(range(cfg.identity_offset, cfg.identity_offset + cfg.num_identities))
    chunk = max(1, min(16, len(ids) // (4 * workers) or 1))
    chunks = [ids[i : i + chunk] for i in range(0, len(ids), chunk)]
    bar = tqdm(total=len(ids) * cfg.images_per_identity, desc=f"render {cfg.image_size}px faces",
               unit="img", disable=not progress)
    results: list = [None] * len(chunks)
    if workers > 1 and len(chunks) > 1:
        try:
            # spawn: safe even when TensorFlow's threads already run in this process. One BLAS thread
            # per worker: the per-image matrices are small, and oversubscribed BLAS threads made 2
            # workers 3x slower than 1 on 2 cores.
            with _single_threaded_blas(), cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                futures = {pool.submit(_render_chunk, cfg, c): k for k, c in enumerate(chunks)}
                for f in cf.as_completed(futures):
                    results[futures[f]] = f.result()
                    bar.update(len(chunks[futures[f]]) * cfg.images_per_identity)
        except cf.process.BrokenProcessPool:
            # Typically a script without an `if __name__ == "__main__":` guard: each spawned worker
            # re-runs it and stops. Render what is missing here, in this process.
            warnings.warn("render_dataset: the worker processes stopped (a script calling it needs an "
                          "`if __name__ == \"__main__\":` guard to render in parallel); rendering in one "
                          "process instead", RuntimeWarning, stacklevel=2)
    for k, c in enumerate(chunks):
        if results[k] is None:
            results[k] = _render_chunk(cfg, c)
            bar.update(len(c) * cfg.images_per_identity)
    bar.close()
    data = _assemble(cfg, [r for chunk_res in results for r in chunk_res])
    if use_cache:
        save_dataset(data, path)
    return data


def save_dataset(data: FaceDataset, path: str | os.PathLike) -> Path:
    """Write a dataset as one uncompressed npz (atomic)."""
    arrays = {
        "images": data.images, "labels": data.labels, "identities": data.identities,
        "landmarks5": data.landmarks5,
        "config": np.array(json.dumps(config_to_dict(data.config) if data.config else None)),
        "format": np.array(CACHE_FORMAT),
    }
    arrays.update({f"nuisance_{k}": v for k, v in data.nuisance.items()})
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return Path(path)


def load_dataset(path: str | os.PathLike) -> FaceDataset:
    """Load a dataset written by :func:`save_dataset`; errors name the file and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"rendered face set not found: {path}")
    try:
        with open_npz(path, "rendered face set") as d:
            missing = {"images", "labels", "identities", "landmarks5"} - set(d.files)
            if missing:
                raise DataError(f"{path}: missing fields {sorted(missing)}")
            images, labels = d["images"], d["labels"]
            if images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(labels):
                raise DataError(f"{path}: images {images.shape} and labels {labels.shape} do not match")
            cfg_json = json.loads(str(d["config"])) if "config" in d.files else None
            return FaceDataset(
                images, labels.astype(np.int64), d["identities"].astype(np.int64), d["landmarks5"],
                {k[len("nuisance_"):]: d[k] for k in d.files if k.startswith("nuisance_")},
                config_from_dict(cfg_json) if cfg_json else None,
            )
    except (OSError, ValueError, KeyError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: not a readable face set ({safe_reason(e)})") from e
