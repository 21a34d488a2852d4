"""Five-point alignment: templates, the Umeyama similarity and the warp."""

from __future__ import annotations

import numpy as np
import pytest

from tfface.data.alignment import (
    ARCFACE_112,
    ARCFACE_112x96,
    align_face,
    similarity_transform,
    template_for,
)
from tfface.errors import DataError


def _similarity(scale: float, angle_deg: float, shift) -> np.ndarray:
    t = np.deg2rad(angle_deg)
    r = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return np.hstack([r, np.asarray(shift, float)[:, None]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def test_templates():
    assert ARCFACE_112.shape == (5, 2) and ARCFACE_112.dtype == np.float32
    np.testing.assert_allclose(ARCFACE_112x96[:, 0], ARCFACE_112[:, 0] - 8.0)
    np.testing.assert_allclose(ARCFACE_112x96[:, 1], ARCFACE_112[:, 1])
    np.testing.assert_allclose(template_for(56), ARCFACE_112 / 2, rtol=1e-6)
    np.testing.assert_allclose(template_for(112), ARCFACE_112)
    assert template_for(64).max() < 64
    with pytest.raises(DataError):
        template_for(0)


@pytest.mark.parametrize("scale,angle,shift", [(1.0, 0.0, (0, 0)), (2.3, 37.0, (-12.5, 40.0)), (0.4, -150.0, (7, -3))])
def test_similarity_recovered_exactly(scale, angle, shift):
    m = _similarity(scale, angle, shift)
    src = ARCFACE_112.astype(np.float64)
    est = similarity_transform(src, _apply(m, src))
    np.testing.assert_allclose(est, m, atol=1e-9)
    inv = similarity_transform(_apply(m, src), src)
    np.testing.assert_allclose(_apply(inv, _apply(m, src)), src, atol=1e-9)


def test_similarity_is_least_squares_and_not_a_reflection():
    rng = np.random.default_rng(0)
    src = ARCFACE_112.astype(np.float64)
    dst = _apply(_similarity(1.5, 10, (3, 4)), src) + rng.normal(0, 2.0, src.shape)
    est = similarity_transform(src, dst)
    best = np.sum((_apply(est, src) - dst) ** 2)
    for _ in range(50):  # any nearby similarity fits worse
        a, b = est[0, 0], est[1, 0]
        da, db, dx, dy = rng.normal(0, 1e-3, 4)
        other = np.array([[a + da, -(b + db), est[0, 2] + dx], [b + db, a + da, est[1, 2] + dy]])
        assert np.sum((_apply(other, src) - dst) ** 2) > best
    mirrored = src * np.array([-1.0, 1.0])
    est = similarity_transform(src, mirrored)
    assert np.linalg.det(est[:, :2]) > 0  # reflections are excluded


def _blob_image(centers, size=(300, 280), sigma=1.5) -> np.ndarray:
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    g = np.zeros(size)
    for cx, cy in np.atleast_2d(centers):
        g = np.maximum(g, np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)))
    return np.repeat((255 * g).astype(np.uint8)[:, :, None], 3, axis=2)


def _peak(image: np.ndarray, near=None, radius: int = 5) -> np.ndarray:
    """Intensity-weighted centroid (x, y) of the bright pixels (within ``radius`` of ``near``)."""
    g = image[..., 0].astype(np.float64)
    yy, xx = np.mgrid[0 : g.shape[0], 0 : g.shape[1]]
    if near is not None:
        g = np.where((np.abs(xx - near[0]) <= radius) & (np.abs(yy - near[1]) <= radius), g, 0.0)
    g = np.where(g > 0.3 * g.max(), g, 0.0)
    return np.array([(g * xx).sum(), (g * yy).sum()]) / g.sum()


@pytest.mark.parametrize("template,points,shape", [
    ("arcface112", ARCFACE_112, (112, 112, 3)),
    ("arcface112x96", ARCFACE_112x96, (112, 96, 3)),
])
@pytest.mark.parametrize("scale,angle", [(1.7, 25.0), (0.8, -40.0)])
def test_align_puts_landmarks_on_template(template, points, shape, scale, angle):
    m = _similarity(scale, angle, (90.0, 40.0))  # template -> image: a known rotation, scale and shift
    landmarks = _apply(m, points.astype(np.float64))
    out = align_face(_blob_image(landmarks, sigma=1.5 * scale), landmarks, template)
    assert out.shape == shape and out.dtype == np.uint8
    for point in points:
        assert out[..., 0][int(round(point[1])), int(round(point[0]))] > 100
        assert np.hypot(*(_peak(out, point) - point)) < 1.0  # within 1 px
    for i in (0, 4):  # one marker at a time: its brightest pixel is at the template point
        single = align_face(_blob_image(landmarks[i], sigma=1.5 * scale), landmarks, template)
        y, x = np.unravel_index(np.argmax(single[..., 0]), single.shape[:2])
        assert np.hypot(x - points[i][0], y - points[i][1]) < 1.0


def test_align_array_template_and_output_size():
    pts = template_for(64)
    landmarks = _apply(_similarity(0.9, -10.0, (30.0, 50.0)), pts.astype(np.float64))
    out = align_face(_blob_image(landmarks[1]), landmarks, pts, output_size=64)
    assert out.shape == (64, 64, 3)
    assert np.hypot(*(_peak(out) - pts[1])) < 1.0
    scaled = align_face(_blob_image(landmarks[1]), landmarks, "arcface112", output_size=64)
    assert np.hypot(*(_peak(scaled) - pts[1])) < 1.0


def test_align_errors():
    img = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(DataError, match=r"\(5, 2\).*\(4, 2\)"):
        align_face(img, np.zeros((4, 2)))
    with pytest.raises(DataError, match="arcface999"):
        align_face(img, ARCFACE_112, "arcface999")
    with pytest.raises(DataError, match="output_size"):
        align_face(img, ARCFACE_112, ARCFACE_112)
    with pytest.raises(DataError, match="uint8"):
        align_face(img.astype(np.float32), ARCFACE_112)
