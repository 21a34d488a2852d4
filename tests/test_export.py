"""Export: TF Serving SavedModel layout and signature, warm-up records, fresh-process parity and check, ONNX."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfface.errors import ConfigError, DataError
from tfface.export import (
    WARMUP_DIR,
    WARMUP_FILE,
    check_saved_model,
    export_onnx,
    export_saved_model,
    onnx_parity,
    read_warmup_requests,
    write_warmup_requests,
)


def tiny_embedder(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((32, 32, 3), name="pixels")
    h = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, keras.layers.Dense(8)(h), name="tiny_embedder")


def tiny_translator(seed: int = 1) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16,))
    return keras.Model(inp, keras.layers.Dense(6)(keras.layers.Dense(12, activation="tanh")(inp)), name="translator")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("serving")
    model = tiny_embedder()
    version_dir = export_saved_model(model, base, name="faces", version=3, input_shape=(32, 32, 3))
    return model, base, version_dir


def test_layout_and_signature_names(exported):
    model, base, version_dir = exported
    assert version_dir == base / "faces" / "3"
    assert sorted(p.name for p in (base / "faces").iterdir()) == ["3"]  # no temp dir left behind
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables" / "variables.index").is_file()
    assert (version_dir / WARMUP_DIR / WARMUP_FILE).is_file()
    sig = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    assert list(sig.structured_input_signature[1]) == ["images"]
    assert sig.structured_input_signature[1]["images"].shape.as_list() == [None, 32, 32, 3]
    assert list(sig.structured_outputs) == ["embeddings"]


def test_fresh_process_reload_matches_model(exported, tmp_path):
    model, _, version_dir = exported
    x = np.random.default_rng(0).uniform(-1, 1, (5, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        sig = tf.saved_model.load({str(version_dir)!r}).signatures["serving_default"]
        y = sig(images=tf.constant(np.load({str(tmp_path / "x.npy")!r})))["embeddings"].numpy()
        np.save({str(tmp_path / "y.npy")!r}, y)
        assert "tfface" not in sys.modules, "the reload process imported tfface"
    """)
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict_on_batch(x), atol=1e-5)


def test_default_warmup_records_parse(exported):
    _, _, version_dir = exported
    records = read_warmup_requests(version_dir / WARMUP_DIR / WARMUP_FILE)
    assert len(records) == 4
    assert all(list(r) == ["images"] and r["images"].shape == (1, 32, 32, 3) for r in records)
    assert all(r["images"].dtype == np.float32 for r in records)


def test_warmup_roundtrip_and_cap(tmp_path):
    from tensorflow_serving.apis import prediction_log_pb2

    ex = np.arange(5 * 4, dtype=np.float32).reshape(5, 4)
    path = write_warmup_requests(tmp_path / "w", "translator", "source_features", ex, max_records=3)
    records = read_warmup_requests(path)
    assert len(records) == 3
    np.testing.assert_array_equal(np.concatenate([r["source_features"] for r in records]), ex[:3])
    raw = next(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    spec = prediction_log_pb2.PredictionLog.FromString(raw).predict_log.request.model_spec
    assert (spec.name, spec.signature_name) == ("translator", "serving_default")
    with pytest.raises(ConfigError, match="1000"):
        write_warmup_requests(tmp_path / "w2", "m", "x", ex, max_records=1001)
    (tmp_path / "junk").write_bytes(b"not a tfrecord at all")
    with pytest.raises(DataError, match="junk"):
        read_warmup_requests(tmp_path / "junk")


def test_check_saved_model_passes_in_fresh_process(exported):
    _, _, version_dir = exported
    report = check_saved_model(version_dir, expected_inputs={"images": [None, 32, 32, 3]},
                               expected_outputs=["embeddings"])
    assert report["ok"], report["problems"]
    assert report["inputs"]["images"]["dtype"] == "float32"
    assert report["outputs"]["embeddings"]["shape"] == [None, 8]
    assert report["method_name"] == "tensorflow/serving/predict"
    assert report["unregistered_ops"] == [] and "Conv2D" in report["ops"]
    assert report["warmup"]["records"] == report["warmup"]["ran"] == 4
    assert report["tfface_imported"] is False


def test_translator_export_is_generic_and_check_flags_custom_ops(tmp_path):
    from tensorflow.core.protobuf import saved_model_pb2

    model = tiny_translator()
    vdir = export_saved_model(model, tmp_path, name="translator", input_name="source_features",
                              output_name="target_features", input_shape=(16,))
    sig = tf.saved_model.load(str(vdir)).signatures["serving_default"]
    x = np.random.default_rng(1).normal(size=(3, 16)).astype(np.float32)
    y = sig(source_features=tf.constant(x))
    assert list(y) == ["target_features"]
    np.testing.assert_allclose(y["target_features"].numpy(), model.predict_on_batch(x), atol=1e-5)

    # Plant an op no stock TensorFlow knows; the check must name it, and the wrong expected output.
    sm = saved_model_pb2.SavedModel.FromString((vdir / "saved_model.pb").read_bytes())
    node = sm.meta_graphs[0].graph_def.node.add()
    node.name, node.op = "planted", "ScannSearchBatched"
    (vdir / "saved_model.pb").write_bytes(sm.SerializeToString())
    report = check_saved_model(vdir, expected_inputs=["source_features"], expected_outputs=["embeddings"])
    assert not report["ok"]
    assert report["unregistered_ops"] == ["ScannSearchBatched"]
    assert any("target_features" in p for p in report["problems"])
    assert not any("input names" in p for p in report["problems"])


def test_check_refuses_non_saved_model(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(DataError, match=str(tmp_path)):
        check_saved_model(tmp_path)
    with pytest.raises(DataError, match="missing"):
        check_saved_model(tmp_path / "missing")


def test_refuses_to_overwrite_a_version(tmp_path):
    model = tiny_translator()
    export_saved_model(model, tmp_path, name="t", input_name="x", output_name="y", input_shape=(16,))
    with pytest.raises(DataError, match="already exists"):
        export_saved_model(model, tmp_path, name="t", input_name="x", output_name="y", input_shape=(16,))
    ex = np.ones((2, 16), np.float32)
    vdir = export_saved_model(model, tmp_path, name="t", input_name="x", output_name="y", input_shape=(16,),
                              warmup_inputs=ex, overwrite=True)
    assert len(read_warmup_requests(vdir / WARMUP_DIR / WARMUP_FILE)) == 2
    with pytest.raises(DataError, match=r"\(3, 15\)"):
        export_saved_model(model, tmp_path, name="t", version=2, input_shape=(16,),
                           warmup_inputs=np.ones((3, 15), np.float32))
    with pytest.raises(ConfigError, match="version"):
        export_saved_model(model, tmp_path, name="t", version=-1, input_shape=(16,))


def test_onnx_parity_and_float32_policy(tmp_path):
    model = tiny_embedder()
    path = export_onnx(model, tmp_path / "tiny.onnx", input_shape=(32, 32, 3))
    x = np.random.default_rng(2).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    assert onnx_parity(model, path, x) <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]

    inp = keras.Input((16,))
    mixed = keras.Model(inp, keras.layers.Dense(4, dtype="mixed_float16")(inp))
    with pytest.raises(ConfigError, match="mixed_float16"):
        export_onnx(mixed, tmp_path / "mixed.onnx", input_shape=(16,))
    assert not (tmp_path / "mixed.onnx").exists()
