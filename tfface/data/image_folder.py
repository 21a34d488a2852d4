"""Image folders: ``root/<identity>/<image>``, one sub-folder per identity.

Identity names are sorted and numbered 0..C-1. Images are read with Pillow as uint8 RGB
(grey images such as PGM get 3 equal channels). Every bad input raises :class:`DataError`
naming the folder or file at fault.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from tfface.errors import DataError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".pgm", ".bmp")


def load_image(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read one image as uint8 [H, W, 3] RGB; ``size=(h, w)`` resizes it (bilinear).

    Raises :class:`DataError` naming the file when it is missing, unreadable or corrupt.
    """
    p = Path(path)
    try:
        with Image.open(p) as im:
            im.load()
            rgb = im.convert("RGB")
    except FileNotFoundError as e:
        raise DataError(f"{p}: image file not found") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{p}: unreadable or corrupt image ({e})") from e
    if size is not None:
        h, w = (int(s) for s in size)
        if h <= 0 or w <= 0:
            raise DataError(f"{p}: size must be (h, w) with positive values, got {size}")
        if rgb.size != (w, h):
            rgb = rgb.resize((w, h), Image.BILINEAR)
    return np.asarray(rgb, np.uint8)


class ImageFolder:
    """A labelled image folder: ``root/<identity>/<image>``.

    Attributes: ``paths`` (list of image paths, identity by identity, names sorted),
    ``labels`` (int64 [N], index of the identity in ``class_names``), ``class_names`` (sorted).
    """

    def __init__(self, root: str | os.PathLike, extensions: Sequence[str] = EXTENSIONS):
        self.root = Path(root)
        self.extensions = tuple(e.lower() for e in extensions)
        if not self.root.is_dir():
            raise DataError(f"image folder not found: {self.root}")
        identities = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not identities:
            raise DataError(f"{self.root}: no identity sub-folders (expected root/<identity>/<image>)")
        paths: list[Path] = []
        labels: list[int] = []
        for label, name in enumerate(identities):
            files = sorted(
                f for f in (self.root / name).iterdir()
                if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in self.extensions
            )
            if not files:
                raise DataError(f"{self.root / name}: identity folder {name!r} has no images "
                                f"with extensions {list(self.extensions)}")
            paths.extend(files)
            labels.extend([label] * len(files))
        self.class_names: list[str] = identities
        self.paths: list[Path] = paths
        self.labels: np.ndarray = np.asarray(labels, np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        """Number of identities."""
        return len(self.class_names)

    def load(self, size: tuple[int, int] | None = None, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 [N, H, W, 3], labels int64 [N]).

        Without ``size`` every image must have the same shape; the first that differs raises
        :class:`DataError` naming it and both shapes.
        """
        images: list[np.ndarray] = []
        first_shape = None
        for p in tqdm(self.paths, desc=f"reading {self.root.name}", unit="img", disable=not progress):
            im = load_image(p, size)
            if first_shape is None:
                first_shape = im.shape
            elif im.shape != first_shape:
                raise DataError(f"{p}: image shape {im.shape} differs from {first_shape} of {self.paths[0]} "
                                f"(pass size=(h, w) to resize)")
            images.append(im)
        return np.stack(images), self.labels.copy()
