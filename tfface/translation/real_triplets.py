"""Triplets from the user's own real faces: (56x56 face, old feature, new feature) to mix with rendered ones.

Renders alone teach a translator most of the map; a few hundred real pairs of the user's own images
close the domain gap (docs/translators.md). :func:`real_triplets` reads an identity-folder tree
(``root/<identity>/<image>``, :class:`~tfface.data.image_folder.ImageFolder`), finds five landmarks per
image with dlib's detector and 5-point shape predictor (the ``real`` extra; when no face is found the
whole image is the face box, counted in ``info["fallbacks"]``), brings each face to each model by its
alignment (:data:`~tfface.data.triplet_spec.ALIGNMENTS` other than ``render``, which is the renderer's
own framing and has no meaning for a photograph), embeds with both models and keeps the ``arcface112``
crop downsized to 56x56. The result is cached atomically in ``cache_dir/real.npz`` beside
``real.json`` (the folder, its files, the models and alignments); a cache of another folder or other
models is rebuilt, never mixed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tfface.atomic import atomic_path
from tfface.data.alignment import align_face
from tfface.data.triplet_spec import ALIGNMENTS
from tfface.errors import ConfigError, DataError
from tfface.methods.r3an.data import FACE_SIZE, PairedFeatures

__all__ = ["real_triplets"]


def _describe(model, alignment: str) -> dict:
    return {"name": model.name, "dim": model.dim, "preprocessing": model.preprocessing.name, "alignment": alignment}


def real_triplets(old, new, folder: str | os.PathLike, cache_dir: str | os.PathLike, old_alignment: str,
                  new_alignment: str, progress: bool = True, where: str = "data.real.path"
                  ) -> tuple[PairedFeatures, dict]:
    """``(PairedFeatures, info)`` of every image under ``folder`` (module docstring); labels are the
    identity folders' indices in sorted order."""
    from tfface.data.image_folder import ImageFolder, load_image
    from tfface.embed.dlib_face import DlibFace, five_point_to_arcface
    from tfface.translation.triplets import _embed

    for role, alignment in (("old", old_alignment), ("new", new_alignment)):
        if alignment not in ALIGNMENTS or alignment == "render":
            raise ConfigError(f"data.{role}_alignment: {alignment!r} cannot align a real photograph; the user's "
                              f"images need a template ({', '.join(a for a in ALIGNMENTS if a != 'render')})")
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{where}: {root} is not a folder of identity folders")
    tree = ImageFolder(root)
    paths = [str(p) for p in tree.paths]
    manifest = {"folder": str(root.resolve()), "files": paths, "old": _describe(old, old_alignment),
                "new": _describe(new, new_alignment), "face_size": FACE_SIZE}
    cache = Path(cache_dir)
    npz, meta = cache / "real.npz", cache / "real.json"
    if npz.is_file() and meta.is_file() and json.loads(meta.read_text()).get("manifest") == manifest:
        with np.load(npz, allow_pickle=False) as d:
            pairs = PairedFeatures(d["faces"], d["source"], d["target"], d["labels"])
        return pairs, json.loads(meta.read_text())["info"]
    t0 = time.perf_counter()
    face = DlibFace()
    faces, src, tgt = [], [], []
    for p in tqdm(paths, desc=f"real pairs {old.name} -> {new.name}", unit="face", disable=not progress):
        image = load_image(p)
        shape = face.shape(image)
        lm = five_point_to_arcface(np.array([(q.x, q.y) for q in shape.parts()], np.float32))
        faces.append(align_face(image, lm, "arcface112", FACE_SIZE))
        src.append(_embed(old, align_face(image, lm, old_alignment)[None], "old")[0])
        tgt.append(_embed(new, align_face(image, lm, new_alignment)[None], "new")[0])
    pairs = PairedFeatures(np.stack(faces), np.stack(src), np.stack(tgt), np.asarray(tree.labels, np.int64))
    info = {"images": len(paths), "identities": int(len(np.unique(pairs.labels))), "fallbacks": int(face.fallbacks),
            "seconds": round(time.perf_counter() - t0, 1)}
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(npz, suffix=".npz") as tmp:
        np.savez(tmp, faces=pairs.faces, source=pairs.source, target=pairs.target, labels=pairs.labels)
    with atomic_path(meta) as tmp:
        tmp.write_text(json.dumps({"manifest": manifest, "info": info}, indent=2))
    return pairs, info
