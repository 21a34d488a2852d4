"""Rendered triplets for any pair of face models: (56x56 face, old feature, new feature) with no real image.

A translator learns the map from an old model's feature space to a new one's from faces both models
have seen. The built-in world renders any number of new identities with their exact five landmarks,
so the user's own two models can be run on as many faces as wanted (issue 12; R3AN's paper Sec. 4
uses real images instead). Per chunk of identities :func:`rendered_triplets`:

1. renders them (:func:`tfface.data.builtin.render_dataset`, not cached: the triplets are the cache)
   at ``render_size`` under the named render distribution (:data:`DISTRIBUTIONS`, recorded in the
   manifest, since it decides what the translator sees);
2. brings each face to each model the way that model expects (:data:`ALIGNMENTS`): ``render`` (the
   renderer's own framing, resized by the model's preprocessing; the built-in presets were trained on
   it), or a warp of the exact landmarks onto a template (``arcface112``, ``arcface112x96``,
   ``dlib150``: :mod:`tfface.data.alignment`);
3. embeds with both models (L2-normalised; NaN/Inf rows are an error naming the model), and keeps
   the ``arcface112`` crop downsized to 56x56 as the face R3AN reconstructs;
4. writes ``chunk-NNNNN.npz`` atomically under ``cache_dir`` beside ``manifest.json`` (the spec, the
   distribution's ranges and both models' names, dims, preprocessing and alignment). An interrupted
   build resumes: chunks on disk are read, not recomputed, and a set grown to more identities keeps
   its chunks; a manifest from other models or another spec is an error naming the differing field,
   never silently mixed.

Example (two tiny stand-in models; any :class:`~tfface.embed.Embedder` works)::

    from tfface.embed import Embedder
    from tfface.translation.triplets import TripletSpec, rendered_triplets
    old = Embedder.from_callable(lambda x: x.mean(axis=(1, 2)), "tfface64", name="mean-rgb", dim=3)
    new = Embedder.from_callable(lambda x: x[:, ::8, ::8, 0].reshape(len(x), -1), "tfface64", name="grid", dim=64)
    pairs, info = rendered_triplets(old, new, TripletSpec(num_identities=4, images_per_identity=2,
                                    render_size=64, chunk_identities=2), cache_dir="runs/doc-triplets")
    print(len(pairs), pairs.source_dim, pairs.target_dim, info["faces_per_second"] > 0)
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tfface.atomic import atomic_path
from tfface.data.alignment import align_face
from tfface.data.builtin import render_dataset
from tfface.data.triplet_spec import ALIGNMENTS, DISTRIBUTIONS, TripletSpec, aligned_for
from tfface.errors import ConfigError, DataError
from tfface.methods.r3an.data import FACE_SIZE, PairedFeatures

MANIFEST_FORMAT = 1

__all__ = ["ALIGNMENTS", "DISTRIBUTIONS", "TripletSpec", "aligned_for", "load_triplets", "rendered_triplets"]

def _describe(model, alignment: str) -> dict:
    return {"name": model.name, "dim": model.dim, "preprocessing": model.preprocessing.name, "alignment": alignment}


def _embed(model, images: np.ndarray, role: str) -> np.ndarray:
    try:
        feats = model.embed(images, normalize=True)
    except DataError as e:
        raise DataError(f"{role} model {model.name!r} cannot embed {images.shape[1]}x{images.shape[2]} faces "
                        f"(preprocessing {model.preprocessing.name!r}): {e}") from e
    if not np.isfinite(feats).all():
        bad = int(np.where(~np.isfinite(feats).all(1))[0][0])
        raise DataError(f"{role} model {model.name!r} returned NaN/Inf features (first bad row {bad} of a chunk)")
    return feats


def _check_manifest(path: Path, manifest: dict) -> None:
    if not path.is_file():
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2))
        return
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable triplet manifest ({e}); remove the folder to rebuild") from e
    for key in manifest:
        same = (found.get(key) == manifest[key] if key != "spec" else  # a set may grow: chunks stay valid
                {**found.get(key, {}), "num_identities": 0} == {**manifest[key], "num_identities": 0})
        if not same:
            raise ConfigError(f"{path.parent}: holds triplets of another {key} ({found.get(key)} vs {manifest[key]}); "
                              "choose another cache folder or remove this one")


def _load_chunk(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as d:
            return {k: d[k] for k in ("faces", "source", "target", "labels")}
    except (OSError, ValueError, KeyError):
        return None  # a damaged chunk is recomputed


def rendered_triplets(old, new, spec: TripletSpec, cache_dir: str | os.PathLike, old_alignment: str = "render",
                      new_alignment: str = "render", progress: bool = True) -> tuple[PairedFeatures, dict]:
    """``(PairedFeatures, info)`` for ``spec`` through the Embedders ``old`` and ``new`` (module docstring).

    ``info``: the manifest plus ``computed``/``reused`` chunk counts, ``seconds`` and ``faces_per_second``
    (end to end over the chunks computed in this call: render, align and both embeddings)."""
    for role, a in (("old", old_alignment), ("new", new_alignment)):
        if a not in ALIGNMENTS:
            raise ConfigError(f"{role}_alignment: unknown {a!r}; known: {', '.join(ALIGNMENTS)}")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    manifest = {"format": MANIFEST_FORMAT, "spec": dataclasses.asdict(spec),
                "distribution": dataclasses.asdict(DISTRIBUTIONS[spec.distribution]),
                "old": _describe(old, old_alignment), "new": _describe(new, new_alignment)}
    manifest = json.loads(json.dumps(manifest))  # tuples as lists, as read back
    _check_manifest(cache / "manifest.json", manifest)
    if json.loads((cache / "manifest.json").read_text())["spec"] != manifest["spec"]:  # grown: record the new size
        with atomic_path(cache / "manifest.json") as tmp:
            tmp.write_text(json.dumps(manifest, indent=2))
    starts = list(range(0, spec.num_identities, spec.chunk_identities))
    chunks, computed, made, seconds = [], 0, 0, 0.0
    bar = tqdm(total=spec.num_identities * spec.images_per_identity, unit="face", disable=not progress,
               desc=f"triplets {old.name} -> {new.name}")
    for k, first in enumerate(starts):
        path = cache / f"chunk-{k:05d}.npz"
        count = min(spec.chunk_identities, spec.num_identities - first)
        chunk = _load_chunk(path) if path.is_file() else None
        if chunk is None or len(chunk["labels"]) != count * spec.images_per_identity:
            t0 = time.perf_counter()
            data = render_dataset(spec.render_config(first, count), use_cache=False, progress=False)
            chunk = {"faces": np.stack([align_face(im, lm, "arcface112", FACE_SIZE)
                                        for im, lm in zip(data.images, data.landmarks5, strict=True)]),
                     "source": _embed(old, aligned_for(data.images, data.landmarks5, old_alignment), "old"),
                     "target": _embed(new, aligned_for(data.images, data.landmarks5, new_alignment), "new"),
                     "labels": (data.labels + first).astype(np.int64)}
            with atomic_path(path, suffix=".npz") as tmp:
                np.savez(tmp, **chunk)
            seconds += time.perf_counter() - t0
            computed += 1
            made += len(chunk["labels"])
        chunks.append(chunk)
        bar.update(count * spec.images_per_identity)
    bar.close()
    pairs = PairedFeatures(*(np.concatenate([c[k] for c in chunks]) for k in ("faces", "source", "target", "labels")))
    info = {**manifest, "cache": str(cache), "computed_chunks": computed, "reused_chunks": len(starts) - computed,
            "seconds": round(seconds, 2), "faces_per_second": round(made / seconds, 1) if seconds else None}
    return pairs, info


def load_triplets(cache_dir: str | os.PathLike) -> tuple[PairedFeatures, dict]:
    """The triplets a :func:`rendered_triplets` build left in ``cache_dir`` and its manifest (for another
    program, e.g. a real-data benchmark, to train on the same renders)."""
    cache = Path(cache_dir)
    manifest_path = cache / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(f"{cache}: no manifest.json; not a rendered-triplets folder")
    manifest = json.loads(manifest_path.read_text())
    spec = TripletSpec(**manifest["spec"])
    chunks = []
    for k in range(len(range(0, spec.num_identities, spec.chunk_identities))):
        chunk = _load_chunk(cache / f"chunk-{k:05d}.npz")
        if chunk is None:
            raise DataError(f"{cache / f'chunk-{k:05d}.npz'}: missing or unreadable; rebuild with rendered_triplets")
        chunks.append(chunk)
    return PairedFeatures(*(np.concatenate([c[k] for c in chunks]) for k in ("faces", "source", "target", "labels"))), \
        manifest
