"""tfface.translation.translate: streamed feature-file translation through a SavedModel, a .keras file or a model."""

import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from tfface.cli import main
from tfface.data.features import load_features, save_features
from tfface.errors import ConfigError, DataError
from tfface.export import export_saved_model
from tfface.translation.translate import load_translator, translate_features

DS, DT, N = 16, 24, 1000


def stand_in_translator(seed: int = 0) -> keras.Model:
    """A tiny translator with R3AN's contract: source_features [None, DS] -> [None, DT]."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((DS,), name="source_features")
    h = keras.layers.Dense(32, activation="relu")(inp)
    return keras.Model(inp, keras.layers.Dense(DT)(h), name="translator")


def _normalised(y):
    y = np.asarray(y, np.float64)
    return y / np.linalg.norm(y, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("translate")
    model = stand_in_translator()
    vdir = export_saved_model(model, root / "export", name="translator", input_name="source_features",
                              output_name="target_features", input_shape=(DS,))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, DS)).astype("float32")
    gallery = save_features(root / "old.npz", x, np.arange(N) % 37, ids=np.arange(N) * 3,
                            paths=[f"img/{i:04d}.png" for i in range(N)])
    return {"root": root, "model": model, "vdir": vdir, "x": x, "gallery": gallery,
            "want": _normalised(model.predict_on_batch(x))}


def test_saved_model_round_trip_streamed_matches_model(setup, tmp_path):
    out = tmp_path / "new.npz"
    rep = translate_features(setup["vdir"], setup["gallery"], out, batch_size=300, progress=False)
    assert (rep.count, rep.source_dim, rep.target_dim) == (N, DS, DT)
    fs = load_features(out, expected_dim=DT)
    np.testing.assert_allclose(fs.features, setup["want"], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(fs.features, axis=1), 1.0, atol=1e-5)
    old = load_features(setup["gallery"])
    np.testing.assert_array_equal(fs.labels, old.labels)
    np.testing.assert_array_equal(fs.ids, old.ids)
    np.testing.assert_array_equal(fs.paths, old.paths)
    with zipfile.ZipFile(out) as z:  # uncompressed, like save_features: memory-mappable
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())


def test_base_dir_takes_highest_version_and_keras_file_and_model(setup, tmp_path):
    other = stand_in_translator(seed=1)
    export_saved_model(other, setup["root"] / "export", name="translator", version=7, input_name="source_features",
                       output_name="target_features", input_shape=(DS,))
    translate_features(setup["root"] / "export" / "translator", setup["gallery"], tmp_path / "a.npz",
                       batch_size=4096, progress=False)
    want_v7 = _normalised(other.predict_on_batch(setup["x"]))
    np.testing.assert_allclose(load_features(tmp_path / "a.npz").features, want_v7, atol=1e-5)

    setup["model"].save(tmp_path / "t.keras")
    translate_features(tmp_path / "t.keras", setup["gallery"], tmp_path / "b.npz", batch_size=128, progress=False)
    np.testing.assert_allclose(load_features(tmp_path / "b.npz").features, setup["want"], atol=1e-5)

    translate_features(setup["model"], setup["gallery"], tmp_path / "c.npz", batch_size=999, progress=False)
    np.testing.assert_allclose(load_features(tmp_path / "c.npz").features, setup["want"], atol=1e-5)

    raw = translate_features(setup["model"], setup["gallery"], tmp_path / "d.npz", normalize=False, progress=False)
    assert raw.target_dim == DT
    np.testing.assert_allclose(load_features(tmp_path / "d.npz").features,
                               setup["model"].predict_on_batch(setup["x"]), rtol=1e-5, atol=1e-5)


def test_wrong_dimension_names_file_field_and_shapes(setup, tmp_path):
    bad = save_features(tmp_path / "d8.npz", np.ones((5, 8), "float32"), np.arange(5))
    with pytest.raises(DataError, match=r"d8\.npz.*'features' has dimension 8.*source_features.*\[None, 16\]"):
        translate_features(setup["vdir"], bad, tmp_path / "o.npz", progress=False)
    assert not (tmp_path / "o.npz").exists()


def test_nan_row_is_named(setup, tmp_path):
    x = setup["x"].copy()
    x[700, 3] = np.nan
    np.savez(tmp_path / "nan.npz", features=x, labels=np.arange(N))  # save_features would refuse it
    with pytest.raises(DataError, match=r"nan\.npz.*NaN/Inf.*row 700"):
        translate_features(setup["vdir"], tmp_path / "nan.npz", tmp_path / "o.npz", batch_size=300, progress=False)


def test_not_a_saved_model_and_missing_features(setup, tmp_path):
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match=r"empty_dir: not a SavedModel"):
        translate_features(tmp_path / "empty_dir", setup["gallery"], tmp_path / "o.npz", progress=False)
    np.savez(tmp_path / "nofeat.npz", labels=np.arange(3))
    with pytest.raises(DataError, match=r"nofeat\.npz: missing field 'features'"):
        translate_features(setup["vdir"], tmp_path / "nofeat.npz", tmp_path / "o.npz", progress=False)
    np.savez(tmp_path / "nolabels.npz", features=np.ones((3, DS), "float32"))
    with pytest.raises(DataError, match=r"nolabels\.npz: missing field 'labels'"):
        translate_features(setup["vdir"], tmp_path / "nolabels.npz", tmp_path / "o.npz", progress=False)
    with pytest.raises(DataError, match=r"translator not found"):
        translate_features(tmp_path / "nope.keras", setup["gallery"], tmp_path / "o.npz", progress=False)
    with pytest.raises(ConfigError, match=r"batch_size"):
        translate_features(setup["vdir"], setup["gallery"], tmp_path / "o.npz", batch_size=0, progress=False)


def test_signature_without_source_features(setup, tmp_path):
    vdir = export_saved_model(setup["model"], tmp_path, name="wrong", input_name="features",
                              output_name="target_features", input_shape=(DS,))
    with pytest.raises(DataError, match=r"has inputs \['features'\], not 'source_features'"):
        load_translator(vdir)
    with pytest.raises(DataError, match=r"no signature 'nope'"):
        load_translator(vdir, signature="nope")


def test_failed_run_leaves_no_output_and_keeps_an_existing_one(setup, tmp_path):
    out = tmp_path / "gallery_new.npz"
    out.write_bytes(b"previous gallery")
    x = setup["x"].copy()
    x[900] = np.inf  # found in the 4th block, after three blocks were written
    np.savez(tmp_path / "late_inf.npz", features=x, labels=np.arange(N))
    with pytest.raises(DataError, match=r"row 900"):
        translate_features(setup["vdir"], tmp_path / "late_inf.npz", out, batch_size=300, progress=False)
    assert out.read_bytes() == b"previous gallery"

    calls = []

    def interrupted(batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return np.ones((len(batch), 4), "float32")

    fresh = tmp_path / "fresh.npz"
    with pytest.raises(KeyboardInterrupt):
        translate_features(interrupted, setup["gallery"], fresh, batch_size=300, progress=False)
    with pytest.raises(KeyboardInterrupt):
        calls.clear()
        translate_features(interrupted, setup["gallery"], out, batch_size=300, progress=False)
    assert not fresh.exists() and out.read_bytes() == b"previous gallery"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery_new.npz", "late_inf.npz"]


def test_cli_translate(setup, tmp_path, capsys):
    out = tmp_path / "cli.npz"
    assert main(["translate", "--translator", str(setup["vdir"]), "--in", str(setup["gallery"]),
                 "--out", str(out), "--batch-size", "256", "--no-progress"]) == 0
    assert "translated 1000 features 16 -> 24" in capsys.readouterr().out
    np.testing.assert_allclose(load_features(out).features, setup["want"], atol=1e-5)
    assert main(["translate", "--translator", str(tmp_path), "--in", str(setup["gallery"]),
                 "--out", str(tmp_path / "x.npz")]) == 2
    assert "not a SavedModel" in capsys.readouterr().err
    assert not Path(tmp_path / "x.npz").exists()
