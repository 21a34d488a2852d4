"""Preview grids of face images (PNG), one row per identity."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from tfface.atomic import atomic_path


def image_grid(images: np.ndarray, labels: np.ndarray, rows: int = 8, cols: int = 8) -> np.ndarray:
    """A (rows*S, cols*S, 3) uint8 grid: up to ``cols`` images of each of the first ``rows`` identities."""
    size = images.shape[1:3]
    grid = np.full((rows * size[0], cols * size[1], 3), 255, np.uint8)
    for r, lab in enumerate(np.unique(labels)[:rows]):
        idx = np.nonzero(labels == lab)[0][:cols]
        for c, i in enumerate(idx):
            grid[r * size[0] : (r + 1) * size[0], c * size[1] : (c + 1) * size[1]] = images[i]
    return grid


def save_grid(data, path: str | os.PathLike, rows: int = 8, cols: int = 8) -> None:
    """Write a preview of a :class:`~tfface.data.builtin.FaceDataset` (or anything with images/labels).

    The format follows the extension: ``.png`` (lossless) or ``.jpg`` (small, for docs).
    """
    fmt = "JPEG" if str(path).lower().endswith((".jpg", ".jpeg")) else "PNG"
    with atomic_path(path, suffix="." + fmt.lower()) as tmp:
        Image.fromarray(image_grid(data.images, data.labels, rows, cols)).save(tmp, format=fmt, quality=85)
