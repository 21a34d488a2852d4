"""Image folders: ``root/<identity>/<image>``, one sub-folder per identity.

Identity names are sorted and numbered 0..C-1. Images are read with Pillow as uint8 RGB
(grey images such as PGM get 3 equal channels; 16-bit grey keeps its 8 high bits). Every bad
input raises :class:`DataError` naming the folder or file at fault.

Example::

    folder = ImageFolder("faces")                  # faces/alice/1.jpg, faces/bob/a.png, ...
    images, labels = folder.load(size=(112, 112))  # uint8 [N, 112, 112, 3], int64 [N]
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

_READ_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _size_hw(size: int | tuple[int, int], where: str) -> tuple[int, int]:
    h, w = (size, size) if np.ndim(size) == 0 else tuple(size)
    if int(h) != h or int(w) != w or h <= 0 or w <= 0:
        raise DataError(f"{where}: size must be a positive int or (h, w), got {size!r}")
    return int(h), int(w)


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode.startswith("I;16"):  # 16-bit grey (PGM/PNG): keep the high byte
        return Image.fromarray((np.asarray(im, np.uint16) >> 8).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def load_image(path: str | os.PathLike, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Read one image as uint8 [H, W, 3] RGB; ``size`` (int or ``(h, w)``) resizes it (PIL bilinear).

    Raises :class:`DataError` naming the file when it is missing, unreadable or corrupt.
    """
    p = Path(path)
    hw = None if size is None else _size_hw(size, str(p))
    try:
        with Image.open(p) as im:
            im.load()
            rgb = _to_rgb(im)
    except FileNotFoundError as e:
        raise DataError(f"{p}: image file not found") from e
    except _READ_ERRORS as e:
        raise DataError(f"{p}: unreadable or corrupt image ({e})") from e
    if hw is not None and rgb.size != (hw[1], hw[0]):
        rgb = rgb.resize((hw[1], hw[0]), Image.BILINEAR)
    return np.asarray(rgb, np.uint8)


class ImageFolder:
    """A labelled image folder: ``root/<identity>/<image>``.

    Attributes: ``paths`` (list of image paths, identity by identity, both sorted by name),
    ``labels`` (int64 [N], index of the identity in ``class_names``), ``class_names`` (sorted
    identity folder names). Files with other extensions and hidden entries are ignored; an identity
    folder without images is an error (it would silently shift every later label).
    """

    def __init__(self, root: str | os.PathLike, extensions: Sequence[str] = EXTENSIONS):
        self.root = Path(root)
        self.extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
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

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r}: {len(self)} images, {self.num_classes} identities)"

    @property
    def num_classes(self) -> int:
        """Number of identities."""
        return len(self.class_names)

    def load(self, size: int | tuple[int, int] | None = None,
             progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 [N, H, W, 3], labels int64 [N]), with a tqdm bar unless ``progress=False``.

        ``size`` (int or ``(h, w)``) resizes every image bilinearly. Without it every image must have
        the shape of the first; the first that differs raises :class:`DataError` naming it and both shapes.
        """
        hw = None if size is None else _size_hw(size, str(self.root))
        out: np.ndarray | None = None
        for i, p in enumerate(tqdm(self.paths, desc=f"reading {self.root.name}", unit="img",
                                   disable=not progress)):
            im = load_image(p, hw)
            if out is None:
                out = np.empty((len(self.paths), *im.shape), np.uint8)
            elif im.shape != out.shape[1:]:
                raise DataError(f"{p}: image shape {im.shape} differs from {out.shape[1:]} of {self.paths[0]} "
                                f"(pass size=(h, w) to resize)")
            out[i] = im
        assert out is not None  # __init__ guarantees at least one image
        return out, self.labels.copy()
