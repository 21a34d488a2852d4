"""TFRecord face sets: one ``tf.train.Example`` per image with features

- ``image/encoded``: bytes, the PNG/JPEG-encoded image,
- ``image/class/label``: int64, the identity index.

``write_tfrecord`` writes one file or ``shards`` files named ``<path>-00000-of-0000N``, each
atomically; ``tfrecord_dataset`` reads a file or glob pattern back as (uint8 [H, W, 3], int64).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfface.atomic import atomic_path
from tfface.data.mxnet_rec import encode_image
from tfface.errors import DataError

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}


def shard_paths(path: str | os.PathLike, shards: int) -> list[Path]:
    """The file names ``write_tfrecord`` uses: ``path`` itself, or ``path-0000i-of-0000N``."""
    p = Path(path)
    if shards == 1:
        return [p]
    return [p.with_name(f"{p.name}-{i:05d}-of-{shards:05d}") for i in range(shards)]


def _example(data: bytes, label: int) -> bytes:
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_tfrecord(path: str | os.PathLike, images: np.ndarray | Sequence[np.ndarray | bytes],
                   labels: np.ndarray | Sequence[int], shards: int = 1, format: str = "png") -> list[Path]:
    """Write images (uint8 arrays, encoded as ``format`` png/jpeg, or already-encoded bytes) and labels.

    Images are spread round-robin over ``shards`` files. Everything is validated and encoded
    before the first file is written; each shard is written atomically. Returns the file paths.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: labels must be a 1-D integer array, got {labels.dtype} shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{path}: {len(images)} images but {len(labels)} labels")
    if not isinstance(shards, int) or shards < 1:
        raise DataError(f"{path}: shards must be a positive integer, got {shards!r}")
    if format.lower() not in ("png", "jpg", "jpeg"):
        raise DataError(f"{path}: unknown image format {format!r} (png or jpeg)")
    encoded: list[bytes] = []
    for i, im in enumerate(images):
        if isinstance(im, (bytes, bytearray, memoryview)):
            encoded.append(bytes(im))
        else:
            try:
                encoded.append(encode_image(im, format))
            except DataError as e:
                raise DataError(f"{path}: image {i}: {e}") from e
    out = shard_paths(path, shards)
    for s, shard in enumerate(out):
        with atomic_path(shard) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
            for i in range(s, len(encoded), shards):
                writer.write(_example(encoded[i], int(labels[i])))
    return out


def _parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    ex = tf.io.parse_single_example(record, _FEATURES)
    image = tf.io.decode_image(ex["image/encoded"], channels=3, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3]), ex["image/class/label"]


def tfrecord_dataset(pattern: str | os.PathLike) -> tf.data.Dataset:
    """(uint8 image [H, W, 3], int64 label) from the TFRecord files matching ``pattern`` (sorted)."""
    files = sorted(glob.glob(str(pattern)))
    if not files:
        raise DataError(f"no TFRecord files match {pattern}")
    return tf.data.TFRecordDataset(files).map(_parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
