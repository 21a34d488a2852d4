"""TFRecord face sets: one ``tf.train.Example`` per image with features

- ``image/encoded``: bytes, the PNG/JPEG-encoded image,
- ``image/class/label``: int64, the identity index.

``write_tfrecord`` writes one file or ``shards`` files named ``<path>-00000-of-0000N`` (images spread
round-robin); ``tfrecord_dataset`` reads a file, glob pattern or list of them back as
(uint8 [H, W, 3], int64) elements.

Example::

    files = write_tfrecord("out/train.tfrecord", images, labels, shards=4)
    ds = tfrecord_dataset("out/train.tfrecord-*")
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfface.atomic import atomic_path
from tfface.data.mxnet_rec import encode_image
from tfface.errors import DataError

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # PNG, JPEG


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


def _check_image(im, i: int, where: str) -> None:
    if isinstance(im, (bytes, bytearray, memoryview)):
        if not bytes(im[:8]).startswith(_SIGNATURES):
            raise DataError(f"{where}: image {i}: encoded bytes are neither PNG nor JPEG")
        return
    arr = np.asarray(im)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3))):
        raise DataError(f"{where}: image {i}: must be uint8 [H, W] or [H, W, 3], got {arr.dtype} shape {arr.shape}")


def write_tfrecord(path: str | os.PathLike, images_or_encoded: np.ndarray | Sequence[np.ndarray | bytes],
                   labels: np.ndarray | Sequence[int], shards: int = 1, format: str = "png") -> list[Path]:
    """Write images and int labels as ``tf.train.Example`` records; returns the file paths.

    ``images_or_encoded``: a uint8 array [N, H, W, 3], or a sequence of uint8 arrays (encoded as
    ``format``: ``png`` lossless or ``jpeg`` quality 95) and/or PNG/JPEG bytes (stored as they are).
    Images go round-robin to ``shards`` files. Every image and label is validated before anything is
    written, and the shards are renamed into place only after all of them were written, so a failure
    leaves no output (and old files as they were).
    """
    where = str(path)
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise DataError(f"{where}: labels must be a 1-D integer array, got {labels.dtype} shape {labels.shape}")
    if len(images_or_encoded) != len(labels):
        raise DataError(f"{where}: {len(images_or_encoded)} images but {len(labels)} labels")
    if len(labels) == 0:
        raise DataError(f"{where}: no images to write")
    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
        raise DataError(f"{where}: shards must be a positive integer, got {shards!r}")
    if shards > len(labels):
        raise DataError(f"{where}: {shards} shards for {len(labels)} images would leave empty shards")
    if format.lower() not in ("png", "jpg", "jpeg"):
        raise DataError(f"{where}: unknown image format {format!r} (png or jpeg)")
    for i, im in enumerate(images_or_encoded):
        _check_image(im, i, where)
    with contextlib.ExitStack() as stack:  # every shard's rename happens when the stack closes
        out = shard_paths(path, int(shards))
        for s, shard in enumerate(out):
            tmp = stack.enter_context(atomic_path(shard))
            with tf.io.TFRecordWriter(str(tmp)) as writer:
                for i in range(s, len(labels), int(shards)):
                    im = images_or_encoded[i]
                    data = bytes(im) if isinstance(im, (bytes, bytearray, memoryview)) else encode_image(im, format)
                    writer.write(_example(data, int(labels[i])))
    return out


def parse_example(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """One serialised ``tf.train.Example`` -> (uint8 image [H, W, 3], int64 label)."""
    ex = tf.io.parse_single_example(record, FEATURES)
    image = tf.io.decode_image(ex["image/encoded"], channels=3, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3]), ex["image/class/label"]


def tfrecord_files(pattern: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Sorted files matching a path, glob pattern, or list of them; :class:`DataError` when none match."""
    patterns = [pattern] if isinstance(pattern, (str, os.PathLike)) else list(pattern)
    files = sorted({f for p in patterns for f in glob.glob(str(p)) if os.path.isfile(f)})
    if not files:
        raise DataError(f"no TFRecord files match {', '.join(str(p) for p in patterns) or '(empty list)'}")
    return files


def tfrecord_dataset(pattern: str | os.PathLike | Sequence[str | os.PathLike]) -> tf.data.Dataset:
    """(uint8 image [H, W, 3], int64 label) from the TFRecord files matching ``pattern``, in sorted file order."""
    files = tfrecord_files(pattern)
    return tf.data.TFRecordDataset(files).map(parse_example, num_parallel_calls=tf.data.AUTOTUNE,
                                              deterministic=True)
