"""Load labelled face images from any supported source by path.

- a folder with one sub-folder per identity (jpg/png/pgm/bmp),
- an InsightFace ``.rec`` (with its ``.idx`` beside it),
- TFRecord files (``.tfrecord``, ``.tfrec`` or a glob pattern) with ``image/encoded``, ``image/class/label``,
- a rendered built-in face set (``.npz`` written by ``tfface render -o``).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from tfface.errors import DataError


def _resize(images: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or images.shape[1:3] == (size, size):
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])


class Faces(NamedTuple):
    """Labelled face images, with their 5-point landmarks where the source has them."""

    images: np.ndarray  #: uint8 [N, H, W, 3]
    labels: np.ndarray  #: int64 [N]
    paths: list[str] | None
    landmarks5: np.ndarray | None  #: float32 [N, 5, 2] pixels, ArcFace order (rendered sets), or None


def load_faces(path: str | os.PathLike, size: int | None = None, progress: bool = True) -> Faces:
    """:func:`load_images` plus the landmarks: a rendered ``.npz`` has them (scaled with ``size``), others not."""
    if str(path).endswith(".npz") and not Path(path).is_dir():
        from tfface.data.builtin import load_dataset

        data = load_dataset(path)
        lms = data.landmarks5.astype(np.float32)
        if size is not None and data.images.shape[1:3] != (size, size):
            h, w = data.images.shape[1:3]
            # pixel-index coordinates: pixel i's centre maps to (i + 0.5) * s - 0.5
            lms = ((lms + 0.5) * np.array([size / w, size / h], np.float32) - 0.5).astype(np.float32)
        return Faces(_resize(data.images, size), data.labels, None, lms)
    return Faces(*load_images(path, size=size, progress=progress), None)


def load_images(path: str | os.PathLike, size: int | None = None, progress: bool = True):
    """(images uint8 [N, H, W, 3], labels int64 [N], paths list[str] or None) from ``path``.

    :func:`load_faces` also returns the landmarks, where the source has them.
    """
    p = Path(path)
    s = str(path)
    if p.is_dir():
        from tfface.data.image_folder import ImageFolder

        folder = ImageFolder(p)
        images, labels = folder.load(size=(size, size) if size else None, progress=progress)
        return images, np.asarray(labels, np.int64), [str(x) for x in folder.paths]
    if s.endswith(".rec"):
        from tfface.data.mxnet_rec import RecordIOReader

        reader = RecordIOReader(p)
        images, labels = [], []
        for key in reader.keys:
            label, _ = reader.read(key)
            images.append(reader.read_image(key))
            labels.append(int(np.asarray(label).reshape(-1)[0]))
        if not images:
            raise DataError(f"{p}: no image records")
        return _resize(np.stack(images), size), np.asarray(labels, np.int64), None
    if s.endswith((".tfrecord", ".tfrec")) or any(c in s for c in "*?["):
        from tfface.data.tfrecord import tfrecord_dataset

        if not glob.glob(s):
            raise DataError(f"no TFRecord files match {s}")
        images, labels = [], []
        for img, lab in tfrecord_dataset(s).as_numpy_iterator():
            images.append(img)
            labels.append(int(lab))
        return _resize(np.stack(images), size), np.asarray(labels, np.int64), None
    if s.endswith(".npz"):
        from tfface.data.builtin import load_dataset

        data = load_dataset(p)
        return _resize(data.images, size), data.labels, None
    if not p.exists():
        raise DataError(f"data path not found: {p}")
    raise DataError(f"{p}: unknown data format (expected an image folder, .rec, .tfrecord or rendered .npz)")
