"""The built-in 3DMM faces: determinism, nuisance factors, styles, cache, bad input."""

import numpy as np
import pytest

from tfface.data.builtin import load_dataset, render_dataset, save_dataset
from tfface.data.morphable_model import load_morphable_model
from tfface.data.render import rasterize
from tfface.data.synthetic import FaceDataConfig, NuisanceConfig, default_model, render_identity
from tfface.errors import ConfigError, DataError


def small(**kw) -> FaceDataConfig:
    base = dict(num_identities=3, images_per_identity=2, image_size=56)
    base.update(kw)
    return FaceDataConfig(**base)


def test_shipped_model_is_small_and_consistent():
    m = load_morphable_model()
    assert 2000 < m.num_vertices < 4000
    assert m.identity_basis.shape == (m.num_identity, m.num_vertices, 3)
    assert m.expression_basis.shape[0] == 53 and len(m.expression_names) == 53
    assert m.triangles.max() < m.num_vertices and m.landmarks68.shape == (68,)
    np.testing.assert_allclose(m.shape(np.zeros(m.num_identity)), m.mean)
    with pytest.raises(DataError, match="identity weights"):
        m.shape(np.zeros(3))


def test_rasterizer_z_buffer_and_coverage():
    # Two overlapping triangles, the nearer one (z=1) red, the farther (z=0) green; CCW in a y-up frame
    # means clockwise in pixel coordinates (y down).
    pts = np.array([[0, 0, 0], [0, 10, 0], [10, 0, 0], [0, 0, 1], [0, 10, 1], [10, 0, 1]], np.float32)
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    cols = np.array([[0, 1, 0]] * 3 + [[1, 0, 0]] * 3, np.float32)
    img, mask = rasterize(pts, tris, cols, 12, 12)
    assert mask[1, 1] and not mask[11, 11]
    np.testing.assert_allclose(img[1, 1], [1, 0, 0])
    assert 40 < mask.sum() < 60  # about half of the 10x10 square
    # A back-facing triangle (reversed winding) is culled.
    _, mask2 = rasterize(pts, tris[:, ::-1], cols, 12, 12)
    assert not mask2.any()


def test_render_is_deterministic_and_subset_stable():
    model = default_model()
    cfg = small()
    a, lm_a, nz_a = render_identity(model, cfg, 2)
    b, _, _ = render_identity(model, cfg, 2)
    np.testing.assert_array_equal(a, b)
    # Identity 2 renders the same whether drawn alone (offset 2) or inside a larger set.
    data = render_dataset(small(num_identities=1, identity_offset=2), use_cache=False, workers=1, progress=False)
    np.testing.assert_array_equal(data.images, a)
    assert data.identities.tolist() == [2, 2] and data.labels.tolist() == [0, 0]
    c, _, _ = render_identity(model, small(seed=1), 2)
    assert np.abs(c.astype(int) - a.astype(int)).mean() > 5


@pytest.mark.parametrize("size", [56, 64, 96, 112])
def test_sizes(size):
    imgs, lms, _ = render_identity(default_model(), small(image_size=size, images_per_identity=1), 0)
    assert imgs.shape == (1, size, size, 3) and imgs.dtype == np.uint8
    # eyes land near the ArcFace template positions (scaled), within the jitter
    eyes = lms[0, :2] / size * 112
    assert np.all(np.abs(eyes[:, 1] - 51.6) < 12)


def test_nuisance_recorded_and_yaw_moves_landmarks():
    frontal = small(nuisance=NuisanceConfig(yaw=(0, 0), roll=(0, 0), pitch=(0, 0)))
    profile = small(nuisance=NuisanceConfig(yaw=(60, 60), roll=(0, 0), pitch=(0, 0)))
    model = default_model()
    _, lm_f, nz_f = render_identity(model, frontal, 0)
    _, lm_p, nz_p = render_identity(model, profile, 0)
    assert nz_f[0]["yaw"] == 0 and nz_p[0]["yaw"] == 60
    iod_f = np.linalg.norm(lm_f[0, 1] - lm_f[0, 0])
    iod_p = np.linalg.norm(lm_p[0, 1] - lm_p[0, 0])
    assert iod_p < 0.7 * iod_f  # cos(60) foreshortening


def test_hard_factors_and_sketch_style():
    model = default_model()
    sharp = small(nuisance=NuisanceConfig(blur=(0, 0), noise=(0, 0)))
    low = small(nuisance=NuisanceConfig(blur=(0, 0), noise=(0, 0), resolution_factors=(8,)))
    a, _, _ = render_identity(model, sharp, 0)
    b, _, nz = render_identity(model, low, 0)
    assert nz[0]["resolution_factor"] == 8

    def high_freq(x):
        g = x.astype(float).mean(-1)
        return np.abs(np.diff(g, axis=1)).mean()

    assert high_freq(b) < 0.6 * high_freq(a)
    sk, _, _ = render_identity(model, small(nuisance=NuisanceConfig(style="sketch")), 0)
    assert np.array_equal(sk[..., 0], sk[..., 1]) and sk.mean() > 120  # grey on light paper


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="image_size"):
        FaceDataConfig(image_size=50)
    with pytest.raises(ConfigError, match="style"):
        NuisanceConfig(style="oil")
    with pytest.raises(ConfigError, match="yaw"):
        NuisanceConfig(yaw=(10, -10))
    with pytest.raises(ConfigError, match="resolution_factors"):
        NuisanceConfig(resolution_factors=(0,))


def test_cache_round_trip_and_corrupt_file(tmp_path):
    cfg = small()
    data = render_dataset(cfg, cache_dir=tmp_path, workers=1, progress=False)
    cached = list(tmp_path.glob("faces-*.npz"))
    assert len(cached) == 1 and not list(tmp_path.glob("*.tmp*"))
    again = render_dataset(cfg, cache_dir=tmp_path, workers=1, progress=False)
    np.testing.assert_array_equal(again.images, data.images)
    assert again.config == cfg
    assert set(data.nuisance) >= {"yaw", "pitch", "roll", "expression", "light_azimuth", "resolution_factor"}
    assert data.nuisance["expression"].shape == (6, 53)
    out = save_dataset(data.subset(data.labels == 1), tmp_path / "one.npz")
    assert len(load_dataset(out)) == 2
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.npz"):
        load_dataset(bad)
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "missing.npz")


def test_parallel_render_equals_serial(tmp_path):
    cfg = small(num_identities=4)
    serial = render_dataset(cfg, use_cache=False, workers=1, progress=False)
    parallel = render_dataset(cfg, use_cache=False, workers=2, progress=False)
    np.testing.assert_array_equal(serial.images, parallel.images)
    np.testing.assert_array_equal(serial.labels, parallel.labels)
