"""Named input preprocessings: the size, channel order, normalisation and layout an embedder expects.

A face embedder is only as good as the preprocessing it was trained with, so every :class:`Embedder`
carries one. Each :class:`Preprocessing` is a frozen dataclass; calling it maps RGB images with pixel
values in 0..255 (uint8 or float, shape ``(N, H, W, 3)``) to the float32 batch the model takes::

    y = ((x * scale) - mean) / std        per channel, after resizing and channel reordering

Registered names (conventions of the model families they are named after):

- ``arcface112``: 112 x 112, RGB, ``(x - 127.5) / 127.5``, NHWC (insightface ``arcface_torch``).
- ``sphereface112x96``: 112 high x 96 wide, RGB, ``(x - 127.5) / 127.5``, NHWC (SphereFace/CosFace crops).
- ``mobilefacenet_onnx``: 112 x 112, RGB, ``x / 255`` then ImageNet mean (0.485, 0.456, 0.406) and
  std (0.229, 0.224, 0.225), NCHW (foamliu/MobileFaceNet's ONNX model).
- ``tfface56``, ``tfface64``, ``tfface112``: S x S, RGB, ``(x / 255 - 0.5) / 0.5``, NHWC (tfface's recognizers).

Example::

    from tfface.embed.preprocessing import get_preprocessing
    prep = get_preprocessing("arcface112")
    batch = prep(images_uint8)          # float32 (N, 112, 112, 3) in [-1, 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfface.errors import ConfigError, DataError

LAYOUTS = ("NHWC", "NCHW")
CHANNEL_ORDERS = ("RGB", "BGR")


@dataclass(frozen=True)
class Preprocessing:
    """How images become model input: resize, reorder channels, ``(x * scale - mean) / std``, layout.

    Inputs are RGB images with pixel values in 0..255 (uint8, or float on the same scale), shaped
    ``(N, H, W, 3)``. Images whose size differs from ``input_size`` are resized bilinearly with
    antialiasing (``tf.image.resize``); align faces first, resizing does not align.
    """

    name: str
    input_size: tuple[int, int]
    channel_order: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: str = "NHWC"

    def __post_init__(self) -> None:
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ConfigError(f"preprocessing {self.name!r}: input_size must be (H, W) > 0, got {self.input_size}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ConfigError(f"preprocessing {self.name!r}: channel_order {self.channel_order!r} "
                              f"not one of {CHANNEL_ORDERS}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"preprocessing {self.name!r}: layout {self.layout!r} not one of {LAYOUTS}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"preprocessing {self.name!r}: mean and std need 3 values, std > 0")

    @property
    def model_input_shape(self) -> tuple[int, int, int]:
        """Shape of one preprocessed image: ``(H, W, 3)`` for NHWC, ``(3, H, W)`` for NCHW."""
        h, w = self.input_size
        return (h, w, 3) if self.layout == "NHWC" else (3, h, w)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Preprocess ``(N, H, W, 3)`` RGB images in 0..255 into the model's float32 batch."""
        x = check_images(images)
        x = x.astype(np.float32, copy=False)
        if x.shape[1:3] != tuple(self.input_size) and len(x):
            import tensorflow as tf

            x = tf.image.resize(x, self.input_size, method="bilinear", antialias=True).numpy()
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        x = (x * np.float32(self.scale) - mean) / std
        if self.layout == "NCHW":
            x = np.transpose(x, (0, 3, 1, 2))
        return np.ascontiguousarray(x, dtype=np.float32)


def check_images(images: np.ndarray, what: str = "images") -> np.ndarray:
    """Return ``images`` as an array after checking it is ``(N, H, W, 3)``; DataError naming the shape."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3:
        hint = " (a single image? add a batch axis: images[None])" if x.ndim == 3 and x.shape[-1] == 3 else ""
        raise DataError(f"{what} must be (N, H, W, 3) RGB, got shape {x.shape}{hint}")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{what} must be uint8 or float pixel values in 0..255, got dtype {x.dtype}")
    return x


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

_REGISTRY: dict[str, Preprocessing] = {}


def register_preprocessing(prep: Preprocessing, overwrite: bool = False) -> Preprocessing:
    """Add ``prep`` to the registry under ``prep.name`` (ConfigError if taken, unless ``overwrite``)."""
    if prep.name in _REGISTRY and not overwrite:
        raise ConfigError(f"preprocessing {prep.name!r} is already registered")
    _REGISTRY[prep.name] = prep
    return prep


def available_preprocessings() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def get_preprocessing(name: str | Preprocessing) -> Preprocessing:
    """The registered preprocessing called ``name`` (a :class:`Preprocessing` is returned as is)."""
    if isinstance(name, Preprocessing):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown preprocessing {name!r}; known: {', '.join(available_preprocessings())}") from None


for _p in (
    # insightface arcface_torch: RGB 112x112, (x - 127.5) / 127.5.
    Preprocessing("arcface112", (112, 112), scale=1.0, mean=(127.5,) * 3, std=(127.5,) * 3),
    # SphereFace / CosFace crops: 112 high x 96 wide, same normalisation.
    Preprocessing("sphereface112x96", (112, 96), scale=1.0, mean=(127.5,) * 3, std=(127.5,) * 3),
    # foamliu/MobileFaceNet exported to ONNX: x / 255, ImageNet mean/std, NCHW.
    Preprocessing("mobilefacenet_onnx", (112, 112), scale=1 / 255, mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
                  layout="NCHW"),
    # tfface's own recognizers: (x / 255 - 0.5) / 0.5, NHWC.
    *(Preprocessing(f"tfface{s}", (s, s), scale=1 / 255, mean=(0.5,) * 3, std=(0.5,) * 3) for s in (56, 64, 112)),
):
    register_preprocessing(_p)
del _p
