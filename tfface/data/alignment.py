"""Five-point face alignment: the reference templates and the similarity warp.

Landmarks are (x, y) in pixel-index coordinates (pixel ``i``'s centre at ``i``, as detectors
such as RetinaFace/MTCNN and OpenCV use), ordered left eye, right eye, nose tip, left mouth
corner, right mouth corner as seen in the image. :func:`align_face` estimates the least-squares
similarity (Umeyama, as ``skimage.transform.SimilarityTransform.estimate``) from the landmarks to
the template and warps with Pillow's bilinear affine transform.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from tfface.errors import DataError

#: InsightFace/ArcFace reference points for 112x112 crops.
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)
#: The same points for 112 (high) x 96 (wide) crops (SphereFace/CosFace): x shifted by -8.
ARCFACE_112x96 = (ARCFACE_112 - np.array([8.0, 0.0], np.float32)).astype(np.float32)

#: Where dlib's 150x150 chip (``dlib.get_face_chip(img, shape, 150)``, padding 0.25) puts the five
#: ArcFace-order points, so a face with known landmarks reaches dlib's descriptor without dlib's
#: detector. Measured on 253 built-in renders where dlib's HOG detector found the face: the similarity
#: from dlib's own 5 points in the image to those in its chip, applied to the renders' exact landmarks,
#: median over faces, made left-right symmetric about the chip centre (74.5). Descriptors of chips
#: aligned this way agree with dlib's own detect-align-describe at mean cosine above 0.95 (tests/test_dlib_face.py).
DLIB_150 = np.array(
    [[46.9, 48.45], [102.1, 48.45], [74.5, 77.7], [52.86, 109.95], [96.14, 109.95]], np.float32,
)

TEMPLATES: dict[str, tuple[np.ndarray, tuple[int, int]]] = {
    # name: (points, (height, width) of the crop they are defined for)
    "arcface112": (ARCFACE_112, (112, 112)),
    "arcface112x96": (ARCFACE_112x96, (112, 96)),
    "dlib150": (DLIB_150, (150, 150)),
}


def template_for(size: int) -> np.ndarray:
    """ARCFACE_112 scaled to a square ``size`` x ``size`` crop (e.g. 56, 64, 96, 112)."""
    if int(size) != size or size <= 0:
        raise DataError(f"template size must be a positive integer, got {size!r}")
    return (ARCFACE_112 * (float(size) / 112.0)).astype(np.float32)


def _points(arr, name: str) -> np.ndarray:
    pts = np.asarray(arr, np.float64)
    if pts.shape != (5, 2):
        raise DataError(f"{name} must have shape (5, 2) (x, y of 5 points), got {pts.shape}")
    if not np.isfinite(pts).all():
        raise DataError(f"{name} contains NaN/Inf")
    return pts


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The (2, 3) similarity ``M`` minimising ``sum |M @ [src, 1] - dst|^2`` (Umeyama 1991).

    ``src`` and ``dst`` are (N, 2) point arrays, N >= 2. Reflections are excluded.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise DataError(f"similarity_transform: src and dst must both be (N >= 2, 2), got {src.shape} and {dst.shape}")
    num, dim = src.shape
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_d, dst_d = src - src_mean, dst - dst_mean
    a = dst_d.T @ src_d / num
    d = np.ones(dim)
    if np.linalg.det(a) < 0:
        d[-1] = -1
    u, s, vt = np.linalg.svd(a)
    rank = np.linalg.matrix_rank(a)
    if rank == 0:
        raise DataError("similarity_transform: degenerate points (all source points coincide)")
    if rank == dim - 1 and np.linalg.det(u) * np.linalg.det(vt) > 0:
        r = u @ vt
    elif rank == dim - 1:
        d2 = d.copy()
        d2[-1] = -1
        r = u @ np.diag(d2) @ vt
    else:
        r = u @ np.diag(d) @ vt
    var = src_d.var(axis=0).sum()
    scale = (s @ d) / var
    m = np.zeros((2, 3))
    m[:, :2] = scale * r
    m[:, 2] = dst_mean - scale * (r @ src_mean)
    return m


def _resolve_template(template, output_size) -> tuple[np.ndarray, tuple[int, int]]:
    if isinstance(template, str):
        if template not in TEMPLATES:
            raise DataError(f"unknown alignment template {template!r}; known: {sorted(TEMPLATES)} or a (5, 2) array")
        pts, (h0, w0) = TEMPLATES[template]
        if output_size is None:
            return pts.astype(np.float64), (h0, w0)
        h, w = _size(output_size)
        return pts.astype(np.float64) * np.array([w / w0, h / h0]), (h, w)
    pts = _points(template, "template")
    if output_size is None:
        raise DataError("align_face: output_size (h, w) is needed with an array template")
    return pts, _size(output_size)


def _size(output_size) -> tuple[int, int]:
    h, w = (output_size, output_size) if np.ndim(output_size) == 0 else tuple(output_size)
    if int(h) != h or int(w) != w or h <= 0 or w <= 0:
        raise DataError(f"output_size must be a positive int or (h, w), got {output_size!r}")
    return int(h), int(w)


def align_face(image: np.ndarray, landmarks5, template: str | np.ndarray = "arcface112",
               output_size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Warp ``image`` (uint8 [H, W, 3] or [H, W]) so its 5 landmarks land on the template points.

    ``template`` is ``"arcface112"`` (112x112), ``"arcface112x96"`` (112 high x 96 wide), ``"dlib150"``
    (dlib's 150x150 chip) or a (5, 2)
    array of points in the output crop (then ``output_size`` is required). With a named template an
    ``output_size`` (int or (h, w)) scales the template to that crop. Returns uint8 [h, w, 3].
    """
    img = np.asarray(image)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3))):
        raise DataError(f"align_face: image must be uint8 [H, W, 3] or [H, W], got {img.dtype} shape {img.shape}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    src = _points(landmarks5, "landmarks5")
    dst, (h, w) = _resolve_template(template, output_size)
    m = np.vstack([similarity_transform(src, dst), [0.0, 0.0, 1.0]])
    # Pillow samples output pixel centres at (x + 0.5, y + 0.5) in coordinates where pixel i spans
    # [i, i + 1); landmarks use pixel-index coordinates, so shift by 0.5 on both sides.
    shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    unshift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    inv = shift @ np.linalg.inv(m) @ unshift  # output (PIL coords) -> input (PIL coords)
    pil = Image.fromarray(img).convert("RGB")
    out = pil.transform((w, h), Image.AFFINE, tuple(inv[:2].reshape(-1)), resample=Image.BILINEAR)
    return np.asarray(out, np.uint8)
