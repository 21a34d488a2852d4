"""Embedder: one interface over Keras, SavedModel, ONNX, TFLite and callables; named preprocessings; features."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfface.embed import (
    Embedder,
    Preprocessing,
    available_preprocessings,
    extract_features,
    get_preprocessing,
)
from tfface.errors import ConfigError, DataError
from tfface.export import export_onnx, export_saved_model

# Real data only behind an explicit path: TFFACE_DATA_DIR=/path/to/data (the folder holding
# mobilefacenet-foamliu-onnx/); the test is skipped without it.
MOBILEFACENET = Path(os.environ.get("TFFACE_DATA_DIR", "/nonexistent")) / "mobilefacenet-foamliu-onnx/MobileFaceNet.onnx"


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    """One tiny 56x56 embedder in every format (the ``tfface56`` preprocessing)."""
    tmp = tmp_path_factory.mktemp("formats")
    keras.utils.set_random_seed(0)
    inp = keras.Input((56, 56, 3))
    h = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(8)(h), name="tiny56")
    saved = export_saved_model(model, tmp / "serving", name="tiny", input_shape=(56, 56, 3))
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=["serving_default"])
    (tmp / "tiny.tflite").write_bytes(converter.convert())
    export_onnx(model, tmp / "tiny.onnx", input_shape=(56, 56, 3))
    export_onnx(model, tmp / "tiny_b1.onnx", input_shape=(56, 56, 3), batch_size=1)
    model.save(tmp / "tiny.keras")
    return {"model": model, "saved_model": saved, "tflite": tmp / "tiny.tflite", "onnx": tmp / "tiny.onnx",
            "onnx_b1": tmp / "tiny_b1.onnx", "keras_file": tmp / "tiny.keras", "tmp": tmp}


@pytest.fixture
def faces():
    return np.random.default_rng(0).integers(0, 256, (7, 56, 56, 3), dtype=np.uint8)


def test_every_format_gives_the_same_embeddings(formats, faces):
    model = formats["model"]
    ref = Embedder.from_keras(model, "tfface56").embed(faces, batch_size=3)
    assert ref.shape == (7, 8) and ref.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ref, axis=1), 1.0, atol=1e-5)
    want = model.predict_on_batch(get_preprocessing("tfface56")(faces))
    np.testing.assert_allclose(ref, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-6)

    embedders = {
        "saved_model": Embedder.load(formats["saved_model"], "tfface56"),
        "onnx": Embedder.load(formats["onnx"], "tfface56"),
        "onnx_b1": Embedder.load(formats["onnx_b1"], "tfface56"),
        "tflite": Embedder.load(formats["tflite"], "tfface56"),
        "keras_file": Embedder.load(formats["keras_file"], "tfface56"),
        "keras": Embedder.load(model, "tfface56"),
        "callable": Embedder.from_callable(lambda x: model(x, training=False), "tfface56", dim=8),
    }
    for kind, emb in embedders.items():
        got = emb.embed(faces, batch_size=3)
        np.testing.assert_allclose(got, ref, atol=1e-4, err_msg=kind)
        assert emb.dim == 8 and emb.preprocessing.name == "tfface56", kind
    assert embedders["onnx"].name.startswith("onnx:") and embedders["tflite"].name.startswith("tflite:")
    assert embedders["saved_model"].name.startswith("saved_model:")
    assert embedders["onnx_b1"]._fixed_batch == 1 and embedders["onnx"]._fixed_batch is None


def test_unnormalised_and_resized_inputs(formats, faces):
    emb = Embedder.from_keras(formats["model"], "tfface56")
    raw = emb.embed(faces, normalize=False)
    np.testing.assert_allclose(raw, formats["model"].predict_on_batch(get_preprocessing("tfface56")(faces)),
                               atol=1e-5)
    small = faces[:, ::2, ::2]  # 28x28 images are resized to 56x56
    assert emb.embed(small).shape == (7, 8)
    assert emb.embed(faces[:0]).shape == (0, 8)


def test_preprocessings():
    assert {"arcface112", "sphereface112x96", "mobilefacenet_onnx", "tfface56", "tfface64",
            "tfface112"} <= set(available_preprocessings())
    img = np.zeros((2, 112, 112, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 255, 0, 51
    arc = get_preprocessing("arcface112")(img)
    assert arc.dtype == np.float32 and arc.shape == (2, 112, 112, 3)
    np.testing.assert_allclose(arc[0, 0, 0], [1.0, -1.0, (51 - 127.5) / 127.5], atol=1e-6)
    mfn = get_preprocessing("mobilefacenet_onnx")(img)
    assert mfn.shape == (2, 3, 112, 112)
    np.testing.assert_allclose(mfn[0, :, 5, 7], [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225],
                               atol=1e-5)
    sph = get_preprocessing("sphereface112x96")(img.astype(np.float32))
    assert sph.shape == (2, 112, 96, 3)
    np.testing.assert_allclose(sph[1, 50, 40], arc[1, 50, 40], atol=1e-4)  # a flat image stays flat
    tf64 = get_preprocessing("tfface64")(img)
    assert tf64.shape == (2, 64, 64, 3) and np.allclose(tf64[0, 0, 0], [1.0, -1.0, 0.2 * 2 - 1], atol=1e-4)
    bgr = Preprocessing("bgr_test", (112, 112), channel_order="BGR")(img)
    np.testing.assert_allclose(bgr[0, 0, 0], [51, 0, 255])


def test_unknown_preprocessing_names_it():
    with pytest.raises(ConfigError, match="no_such_prep.*arcface112"):
        get_preprocessing("no_such_prep")
    with pytest.raises(ConfigError, match="no_such_prep"):
        Embedder.from_callable(lambda x: x, "no_such_prep")


def test_bad_images_and_mismatched_model(formats):
    emb = Embedder.from_keras(formats["model"], "tfface56")
    with pytest.raises(DataError, match=r"\(5, 56, 56\)"):
        emb.embed(np.zeros((5, 56, 56), np.uint8))
    with pytest.raises(DataError, match=r"\(56, 56, 3\).*batch axis"):
        emb.embed(np.zeros((56, 56, 3), np.uint8))
    with pytest.raises(ConfigError, match="arcface112"):
        Embedder.from_keras(formats["model"], "arcface112")  # the model takes 56x56, not 112x112


def test_load_errors_name_the_path(formats, tmp_path):
    with pytest.raises(DataError, match="missing.onnx"):
        Embedder.load(tmp_path / "missing.onnx", "tfface56")
    with pytest.raises(DataError, match="saved_model.pb"):
        Embedder.load(tmp_path, "tfface56")
    (tmp_path / "model.pt").write_bytes(b"\0")
    with pytest.raises(DataError, match=r"model\.pt.*'\.pt'"):
        Embedder.load(tmp_path / "model.pt", "tfface56")
    with pytest.raises(ConfigError, match="no signature 'nope'"):
        Embedder.from_saved_model(formats["saved_model"], "tfface56", signature="nope")


def test_extract_features_file(formats, faces, tmp_path):
    emb = Embedder.load(formats["onnx"], "tfface56")
    labels = [0, 0, 1, 1, 2, 2, 3]
    paths = [f"id{label}/img{i}.png" for i, label in enumerate(labels)]
    out = extract_features(emb, faces, labels, tmp_path / "feats.npz", ids=np.arange(7) + 100, paths=paths)
    with np.load(out, allow_pickle=False) as f:
        assert sorted(f.files) == ["features", "ids", "labels", "paths"]
        assert f["features"].dtype == np.float32 and f["features"].shape == (7, 8)
        assert f["labels"].dtype == np.int64 and f["labels"].tolist() == labels
        assert f["paths"].tolist() == paths and f["ids"].tolist() == list(range(100, 107))
        np.testing.assert_allclose(f["features"], emb.embed(faces), atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.npz"]
    with pytest.raises(DataError, match=r"labels.*\(7,\).*\(6,\)"):
        extract_features(emb, faces, labels[:6], tmp_path / "bad.npz")


@pytest.mark.skipif(not MOBILEFACENET.is_file(), reason="set TFFACE_DATA_DIR to run against the real MobileFaceNet ONNX model")
def test_real_mobilefacenet_fixed_batch_one():
    emb = Embedder.load(MOBILEFACENET, "mobilefacenet_onnx")
    assert emb._fixed_batch == 1 and emb.dim == 128
    faces = np.random.default_rng(3).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    together = emb.embed(faces, batch_size=2)
    one_by_one = np.concatenate([emb.embed(faces[i:i + 1]) for i in range(3)])
    assert together.shape == (3, 128)
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
