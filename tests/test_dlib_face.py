"""dlib's face descriptor embedder (the ``real`` extra) and the real-data R3AN recipe's skip path.

Needs no data: the recipe is only run against a missing path. Skipped when dlib is not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

dlib = pytest.importorskip("dlib")
pytest.importorskip("face_recognition_models")

from tfface.data.alignment import ARCFACE_112  # noqa: E402
from tfface.embed import dlib_face  # noqa: E402
from tfface.errors import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install 'tfface\[real\]'"):
        dlib_face.dlib_embedder()
    monkeypatch.setitem(sys.modules, "dlib", dlib)
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    with pytest.raises(ConfigError, match=r"real.*pip install 'tfface\[real\]'"):
        dlib_face.require_dlib()


def test_five_point_to_arcface_order_and_geometry():
    # dlib's order on an upright face: right-image eye outer/inner, left-image eye outer/inner, nose base.
    parts = np.array([[80, 50], [64, 50], [30, 50], [46, 50], [55, 80]], np.float32)
    pts = dlib_face.five_point_to_arcface(parts)
    assert pts.shape == (5, 2)
    np.testing.assert_allclose(pts[0], [38, 50])  # left eye centre (image left)
    np.testing.assert_allclose(pts[1], [72, 50])
    iod = 34.0
    np.testing.assert_allclose(pts[2], [55, 80 - dlib_face.NOSE_TIP_ABOVE_BASE * iod], rtol=1e-6)
    assert pts[3, 0] < pts[4, 0] and pts[3, 1] == pytest.approx(50 + dlib_face.MOUTH_BELOW_EYES * iod)
    # laid out like the ArcFace template: eyes left to right, nose below the eyes, mouth below the nose
    assert (pts[1, 0] > pts[0, 0]) == (ARCFACE_112[1, 0] > ARCFACE_112[0, 0])
    assert pts[0, 1] < pts[2, 1] < pts[3, 1] and ARCFACE_112[0, 1] < ARCFACE_112[2, 1] < ARCFACE_112[3, 1]


def test_embedder_on_a_blank_image_is_128d():
    emb = dlib_face.dlib_embedder()
    assert emb.dim == dlib_face.DESCRIPTOR_DIM
    f = emb.embed(np.full((1, 112, 92, 3), 128, np.uint8))  # no face: the whole image is the face box
    assert f.shape == (1, 128) and np.isfinite(f).all()
    assert emb._resource.fallbacks == 1


def test_recipe_skips_cleanly_without_data(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(ROOT / "tfface" / "experiments" / "r3an_real.py"), "--orl", "/nonexistent",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stdout and "/nonexistent" in proc.stdout and "TFFACE_DATA_DIR" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_the_dlib150_template_reaches_dlibs_own_descriptor_without_its_detector():
    """Chips warped from the renders' exact landmarks onto DLIB_150 give (nearly) the descriptor of dlib's
    own detect + 5-point + chip pipeline, on the faces its detector finds."""
    from tfface.data.builtin import render_dataset
    from tfface.data.synthetic import FaceDataConfig
    from tfface.translation.triplets import aligned_for

    data = render_dataset(FaceDataConfig(num_identities=12, images_per_identity=2, image_size=112, seed=3,
                                         identity_offset=700_000), use_cache=False, progress=False)
    face = dlib_face.DlibFace()
    found = []
    for k, im in enumerate(data.images):
        before = face.fallbacks
        face.face_box(im)
        if face.fallbacks == before:
            found.append(k)
    assert len(found) >= 8
    own = np.stack([face.describe(data.images[k]) for k in found])
    chips = aligned_for(data.images[found], data.landmarks5[found], "dlib150")
    ours = dlib_face.dlib_chip_embedder().embed(chips)
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    assert float(np.mean(np.sum(own * ours, axis=1))) > 0.95
    with pytest.raises(Exception, match="150x150 chips"):
        dlib_face.dlib_chip_embedder().embed(chips[:, :112, :112])
