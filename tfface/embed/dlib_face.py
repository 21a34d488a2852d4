"""dlib's ResNet face descriptor (128-D) as an :class:`~tfface.embed.Embedder`, and dlib 5-point landmarks
in the ArcFace order, so a second real model (e.g. the MobileFaceNet ONNX) can be aligned to ``ARCFACE_112``.

Needs the ``real`` extra: ``pip install 'tfface[real]'`` (``dlib-bin face-recognition-models setuptools``;
the models are public domain). Per image:

1. face box: dlib's HOG frontal detector (no upsampling, then 1x and 2x upsampling for small images); the
   largest detection wins. When nothing is detected (pre-cropped faces, e.g. 64x64 thumbnails) the whole
   image is the face box, which suits tightly cropped faces only;
2. dlib's 5-point shape predictor (``face_recognition_models.pose_predictor_five_point_model_location()``);
3. ``dlib.get_face_chip(img, shape, size=150)``, then ``compute_face_descriptor(chip)`` (128-D).

dlib's 5-point model gives two corners of each eye and the base of the nose (subnasale), not the
ArcFace points (eye centres, nose tip, mouth corners). :func:`five_point_to_arcface` derives them:

- eye centre = the midpoint of that eye's two corners;
- nose tip = the nose base moved up (towards the eyes, perpendicular to the eye line) by
  :data:`NOSE_TIP_ABOVE_BASE` x the inter-ocular distance (IOD);
- mouth corners = eye midpoint + (-/+ :data:`MOUTH_HALF_WIDTH`, :data:`MOUTH_BELOW_EYES`) x IOD in the
  eye-aligned frame, i.e. synthesised from the eyes alone.

The three constants are the mean offsets of dlib's 68-point predictor's nose tip (point 30) and mouth
corners (48, 54) relative to the 5-point eyes and nose base, measured on 96 frontal ORL faces (std about
0.1 IOD). The mouth points thus carry no information of their own: the similarity fit of
:func:`~tfface.data.alignment.align_face` is effectively determined by the eyes and the nose, with the
mouth points pulling rotation and scale towards the eye frame. For frontal faces this is close to
68-point alignment; for strong expressions or pose it is an approximation.

Example::

    from tfface.embed.dlib_face import dlib_embedder, arcface_landmarks
    old = dlib_embedder()                      # Embedder, 128-D, unit rows
    feats = old.embed(images_uint8)            # images: (N, H, W, 3) RGB 0..255, any size
    pts = arcface_landmarks(images_uint8)      # (N, 5, 2) for tfface.data.alignment.align_face
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tfface.embed.embedder import Embedder
from tfface.embed.preprocessing import Preprocessing, check_images
from tfface.errors import ConfigError, DataError

INSTALL_HINT = "pip install 'tfface[real]'"
#: How recipes name dlib's models (not paths): detect-align-describe, and the descriptor on aligned chips.
MODEL_NAMES = ("dlib", "dlib:chip")
DESCRIPTOR_DIM = 128
CHIP_SIZE = 150

#: nose tip above dlib's nose base, in inter-ocular distances (68-point tip vs base on ORL: 0.47 vs 0.68).
NOSE_TIP_ABOVE_BASE = 0.21
#: mouth corners below the eye midpoint and either side of it, in inter-ocular distances.
MOUTH_BELOW_EYES = 0.97
MOUTH_HALF_WIDTH = 0.45


def require_dlib() -> tuple[Any, Any]:
    """``(dlib, face_recognition_models)``, or ConfigError naming the ``real`` extra."""
    try:
        import dlib
        import face_recognition_models
    except ImportError as e:  # also ModuleNotFoundError, and pkg_resources missing (no setuptools)
        missing = getattr(e, "name", None) or str(e)
        raise ConfigError(f"dlib's face descriptor needs the 'real' extra ({missing} is not importable): "
                          f"{INSTALL_HINT}") from e
    return dlib, face_recognition_models


def five_point_to_arcface(parts: np.ndarray) -> np.ndarray:
    """dlib 5-point landmarks (5, 2) -> ArcFace-order (5, 2): left eye, right eye, nose tip, mouth L, mouth R.

    dlib's order: 0/1 outer/inner corner of the eye on the image's right, 2/3 outer/inner corner of the
    eye on the image's left, 4 nose base. "Left" in the output is the image's left (the ArcFace
    template's first point, x = 38.3). See the module doc for the approximation.
    """
    p = np.asarray(parts, np.float64)
    if p.shape != (5, 2) or not np.isfinite(p).all():
        raise DataError(f"dlib 5-point landmarks must be finite (5, 2), got shape {p.shape}")
    left = p[2:4].mean(axis=0)
    right = p[0:2].mean(axis=0)
    ex = right - left
    iod = float(np.linalg.norm(ex))
    if iod < 1e-6:
        raise DataError("dlib 5-point landmarks: the two eyes coincide")
    ex = ex / iod
    ey = np.array([-ex[1], ex[0]])  # image "down" for an upright face (y grows downwards)
    mid = (left + right) / 2.0
    nose = p[4] - NOSE_TIP_ABOVE_BASE * iod * ey
    mouth_mid = mid + MOUTH_BELOW_EYES * iod * ey
    mouth_l = mouth_mid - MOUTH_HALF_WIDTH * iod * ex
    mouth_r = mouth_mid + MOUTH_HALF_WIDTH * iod * ex
    return np.stack([left, right, nose, mouth_l, mouth_r]).astype(np.float32)


@dataclass(frozen=True)
class _RawPixels(Preprocessing):
    """No resizing, no normalisation: dlib detects and crops on the original image (float32 0..255)."""

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(check_images(images), dtype=np.float32)


RAW_PIXELS = _RawPixels("dlib_raw", (CHIP_SIZE, CHIP_SIZE))


class DlibFace:
    """dlib's detector, 5-point shape predictor and ResNet descriptor, loaded once.

    ``upsample``: the largest detector upsampling tried on images whose shorter side is under 200 px
    (HOG finds faces of about 80 px and up). ``num_jitters`` > 0 averages descriptors of jittered chips
    (slower, slightly more accurate).
    """

    def __init__(self, upsample: int = 2, num_jitters: int = 0) -> None:
        dlib, models = require_dlib()
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape_predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self.descriptor_model = dlib.face_recognition_model_v1(models.face_recognition_model_location())
        self.upsample = int(upsample)
        self.num_jitters = int(num_jitters)
        self.detections = 0  # images with a detected face
        self.fallbacks = 0  # images where the whole image was the face box

    @staticmethod
    def _uint8(image: np.ndarray) -> np.ndarray:
        img = np.asarray(image)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        if img.ndim != 3 or img.shape[2] != 3:
            raise DataError(f"dlib: image must be (H, W, 3) RGB or (H, W) grey, got shape {img.shape}")
        if img.dtype != np.uint8:
            img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(img)

    def face_box(self, image: np.ndarray):
        """The largest detected face (dlib.rectangle), else the whole image (counted in ``fallbacks``)."""
        img = self._uint8(image)
        tries = range(self.upsample + 1) if min(img.shape[:2]) < 200 else range(1)
        for up in tries:
            found = list(self.detector(img, up))
            if found:
                self.detections += 1
                return max(found, key=lambda r: r.width() * r.height())
        self.fallbacks += 1
        return self._dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)

    def shape(self, image: np.ndarray, box=None):
        img = self._uint8(image)
        return self.shape_predictor(img, self.face_box(img) if box is None else box)

    def landmarks5(self, image: np.ndarray) -> np.ndarray:
        """dlib's own 5 points (5, 2) float32, in dlib's order (see :func:`five_point_to_arcface`)."""
        return np.array([(p.x, p.y) for p in self.shape(image).parts()], np.float32)

    def arcface_points(self, image: np.ndarray) -> np.ndarray:
        """The 5 points in ArcFace order (5, 2) float32, for :func:`tfface.data.alignment.align_face`."""
        return five_point_to_arcface(self.landmarks5(image))

    def chip(self, image: np.ndarray) -> np.ndarray:
        """dlib's aligned 150x150 RGB chip (uint8)."""
        img = self._uint8(image)
        return np.asarray(self._dlib.get_face_chip(img, self.shape(img), size=CHIP_SIZE), np.uint8)

    def describe(self, image: np.ndarray) -> np.ndarray:
        """The raw 128-D descriptor of one image (float32; dlib's are close to unit length already)."""
        chip = self.chip(image)
        return np.asarray(self.descriptor_model.compute_face_descriptor(chip, self.num_jitters), np.float32)

    def analyse(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """One detection for both models: (128-D descriptor, ArcFace-order 5 points, whether a face was detected)."""
        img = self._uint8(image)
        before = self.fallbacks
        shape = self.shape(img)
        chip = np.asarray(self._dlib.get_face_chip(img, shape, size=CHIP_SIZE), np.uint8)
        desc = np.asarray(self.descriptor_model.compute_face_descriptor(chip, self.num_jitters), np.float32)
        pts = five_point_to_arcface(np.array([(p.x, p.y) for p in shape.parts()], np.float32))
        return desc, pts, self.fallbacks == before

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([self.describe(im) for im in np.asarray(batch)]) if len(batch) else \
            np.zeros((0, DESCRIPTOR_DIM), np.float32)


def dlib_embedder(upsample: int = 2, num_jitters: int = 0) -> Embedder:
    """dlib's ResNet face descriptor as an Embedder: RGB uint8 (N, H, W, 3), any size -> (N, 128).

    The backend is a :class:`DlibFace` (``embedder._resource``); images are not resized, dlib detects,
    aligns (5 points, 150x150 chip) and describes each one. ConfigError naming the ``real`` extra when
    dlib or face_recognition_models is not installed.
    """
    face = DlibFace(upsample=upsample, num_jitters=num_jitters)
    return Embedder(face, RAW_PIXELS, "dlib:resnet_v1", dim=DESCRIPTOR_DIM, resource=face)


class _ChipDescriptor:
    """dlib's descriptor on faces already aligned to its 150x150 chip (no detection)."""

    def __init__(self, face: DlibFace) -> None:
        self.face = face

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.shape[1:3] != (CHIP_SIZE, CHIP_SIZE):
            raise DataError(f"dlib:resnet_v1:chip takes {CHIP_SIZE}x{CHIP_SIZE} chips aligned to the 'dlib150' "
                            f"template (tfface.data.alignment), got images of {batch.shape[1:3]}")
        if not len(batch):
            return np.zeros((0, DESCRIPTOR_DIM), np.float32)
        chips = [np.ascontiguousarray(np.clip(np.rint(c), 0, 255).astype(np.uint8)) for c in batch]
        return np.asarray(self.face.descriptor_model.compute_face_descriptor(chips, self.face.num_jitters),
                          np.float32)


def dlib_chip_embedder(num_jitters: int = 0) -> Embedder:
    """dlib's descriptor on pre-aligned 150x150 chips: for faces whose landmarks are known (renders),
    aligned with ``align_face(image, points, "dlib150")``; no detection, so no missed faces."""
    face = DlibFace(num_jitters=num_jitters)
    return Embedder(_ChipDescriptor(face), RAW_PIXELS, "dlib:resnet_v1:chip", dim=DESCRIPTOR_DIM, resource=face)


def arcface_landmarks(images: np.ndarray, face: DlibFace | None = None) -> np.ndarray:
    """ArcFace-order 5 points (N, 5, 2) of RGB images (N, H, W, 3) (or a list of differently sized ones)."""
    face = face or DlibFace()
    return np.stack([face.arcface_points(im) for im in images]) if len(images) else np.zeros((0, 5, 2), np.float32)


def align_arcface(images: np.ndarray, face: DlibFace | None = None, size: int = 112) -> np.ndarray:
    """Faces aligned to the ArcFace template with dlib-derived 5 points: uint8 (N, size, size, 3)."""
    from tfface.data.alignment import align_face

    face = face or DlibFace()
    out = [align_face(face._uint8(im), face.arcface_points(im), "arcface112", output_size=size) for im in images]
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)
