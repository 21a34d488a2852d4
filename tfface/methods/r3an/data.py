"""Paired data for feature translation (R3AN): (56x56 face, source feature, target feature) triplets.

From any images and two embedders (the old "source" model and the new "target" model), build the
triplets R3AN trains on (paper Sec. 4): the faces resized to 56x56 ("to make it easier for
reconstruction"), bilinear, kept as uint8 and mapped to [-1, 1] in the input pipeline; both features
L2-normalised. :func:`build_pairs` caches the result in an ``.npz`` (written atomically, no pickle)
when given a path.

Example:
  >>> import numpy as np
  >>> from tfface.methods.r3an.data import PairedFeatures
  >>> p = PairedFeatures(np.zeros((2, 56, 56, 3), np.uint8), np.ones((2, 4), np.float32),
  ...                    np.ones((2, 8), np.float32), np.array([0, 1]))
  >>> len(p), p.source_dim, p.target_dim
  (2, 4, 8)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfface.atomic import atomic_path
from tfface.errors import DataError

FACE_SIZE = 56


@dataclass
class PairedFeatures:
    """``faces`` uint8 (N, 56, 56, 3), ``source`` (N, Ds) and ``target`` (N, Dt) unit rows, ``labels`` (N,)."""

    faces: np.ndarray
    source: np.ndarray
    target: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        n = len(self.faces)
        if self.faces.shape[1:] != (FACE_SIZE, FACE_SIZE, 3):
            raise DataError(f"paired faces must be (N, {FACE_SIZE}, {FACE_SIZE}, 3), got {self.faces.shape}")
        for name in ("source", "target", "labels"):
            if len(getattr(self, name)) != n:
                raise DataError(f"paired {name} has {len(getattr(self, name))} rows, faces have {n}")
        for name in ("source", "target"):
            v = getattr(self, name)
            if v.ndim != 2 or not np.isfinite(v).all():
                raise DataError(f"paired {name} features must be finite (N, D), got shape {v.shape}")

    def __len__(self) -> int:
        return len(self.faces)

    @property
    def source_dim(self) -> int:
        return int(self.source.shape[1])

    @property
    def target_dim(self) -> int:
        return int(self.target.shape[1])

    def subset(self, index) -> PairedFeatures:
        return PairedFeatures(self.faces[index], self.source[index], self.target[index], self.labels[index])

    def dataset(self, batch_size: int, shuffle: bool = True, seed: int = 0):
        """``tf.data``: ``((source, faces in [-1, 1]), target)`` batches, the last partial batch dropped
        (fixed shapes under a strategy); batch with the GLOBAL batch size."""
        import tensorflow as tf

        if batch_size > len(self):
            raise DataError(f"batch_size {batch_size} is larger than the {len(self)} training triplets")
        ds = tf.data.Dataset.from_tensor_slices(((self.source, self.faces), self.target))
        if shuffle:
            ds = ds.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=True)
        ds = ds.map(lambda xi, y: ((xi[0], tf.cast(xi[1], tf.float32) / 127.5 - 1.0), y),
                    num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)


def resize_faces(images: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """uint8 (N, H, W, 3) -> uint8 (N, size, size, 3), bilinear with antialiasing."""
    import tensorflow as tf

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"images must be (N, H, W, 3), got {images.shape}")
    out = [tf.image.resize(images[i:i + 1024], (size, size), method="bilinear", antialias=True).numpy()
           for i in range(0, len(images), 1024)]
    return np.clip(np.rint(np.concatenate(out)), 0, 255).astype(np.uint8)


def build_pairs(images: np.ndarray, labels: np.ndarray, source_embedder, target_embedder,
                cache: str | os.PathLike | None = None) -> PairedFeatures:
    """Embed ``images`` (uint8, any size the embedders accept) with both models; see the module docstring."""
    if cache is not None and Path(cache).is_file():
        return load_pairs(cache)
    labels = np.asarray(labels)
    if len(labels) != len(images):
        raise DataError(f"{len(images)} images but {len(labels)} labels")
    pairs = PairedFeatures(resize_faces(images), source_embedder.embed(images, normalize=True),
                           target_embedder.embed(images, normalize=True), labels)
    if cache is not None:
        save_pairs(pairs, cache)
    return pairs


def save_pairs(pairs: PairedFeatures, path: str | os.PathLike) -> Path:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, faces=pairs.faces, source=pairs.source, target=pairs.target, labels=pairs.labels)
    return Path(path)


def load_pairs(path: str | os.PathLike) -> PairedFeatures:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as d:
            missing = {"faces", "source", "target", "labels"} - set(d.files)
            if missing:
                raise DataError(f"{path}: not a paired-features file, missing {sorted(missing)}")
            return PairedFeatures(d["faces"], d["source"], d["target"], d["labels"])
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read paired features ({e})") from e
