"""The tfface command line: commands run end to end; bad input exits 2 naming the culprit."""

import json

import numpy as np
import pytest

from tfface.cli import main
from tfface.experiments.bench_data import bench_data


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert "tfface" in capsys.readouterr().out


def test_render_writes_set_and_preview(tmp_path, capsys):
    out, prev = tmp_path / "faces.npz", tmp_path / "faces.png"
    assert main(["render", "--identities", "3", "--images", "2", "--size", "56", "--workers", "1",
                 "-o", str(out), "--preview", str(prev)]) == 0
    with np.load(out) as d:
        assert d["images"].shape == (6, 56, 56, 3)
    assert prev.stat().st_size > 1000


def test_render_bad_config_names_the_key(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("num_identities: 2\nnuisance: {yawn: [0, 1]}\n")
    assert main(["render", "--config", str(cfg)]) == 2
    assert "nuisance.yawn" in capsys.readouterr().err


def test_train_unknown_recipe_key(tmp_path, capsys):
    r = tmp_path / "r.yaml"
    r.write_text("name: x\nmethod: recognizer\ntrain: {epochs: 1, learnig_rate: 0.1}\n")
    assert main(["train", str(r)]) == 2
    err = capsys.readouterr().err
    assert "train.learnig_rate" in err and "r.yaml" in err


def test_eval_feature_file(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16))
    labels = np.repeat(np.arange(20), 4)
    feats = (centres[labels] + 0.3 * rng.normal(size=(80, 16))).astype(np.float32)
    np.savez(tmp_path / "f.npz", features=feats, labels=labels)
    assert main(["eval", "--probe", str(tmp_path / "f.npz"), "--out", str(tmp_path / "ev")]) == 0
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert rep["identification"]["rank_accuracy"]["1"] > 0.5
    assert (tmp_path / "ev" / "roc.png").is_file()


def test_eval_rejects_nan_features(tmp_path, capsys):
    feats = np.ones((4, 8), np.float32)
    feats[2, 3] = np.nan
    np.savez(tmp_path / "bad.npz", features=feats, labels=np.array([0, 0, 1, 1]))
    assert main(["eval", "--probe", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "ev")]) == 2
    assert "bad.npz" in capsys.readouterr().err
    assert not (tmp_path / "ev" / "report.json").exists()


def test_bench_data_record():
    r = bench_data(sizes=(56,), identities=2, images=2, workers=2)
    assert r["benchmark"] == "data"
    assert {x["workers"] for x in r["results"]} == {1, 2}
    assert all(x["images_per_s"] > 0 for x in r["results"])


def test_extract_with_a_keras_model(tmp_path):
    import keras

    inp = keras.Input((56, 56, 3), name="images")
    out = keras.layers.Dense(8)(keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp)))
    keras.Model(inp, out).save(tmp_path / "m.keras")
    faces = tmp_path / "faces.npz"
    assert main(["render", "--identities", "2", "--images", "3", "--size", "56", "--workers", "1",
                 "-o", str(faces)]) == 0
    feats = tmp_path / "feats.npz"
    assert main(["extract", "--model", str(tmp_path / "m.keras"), "--data", str(faces),
                 "--preprocessing", "tfface56", "-o", str(feats)]) == 0
    with np.load(feats) as d:
        assert d["features"].shape == (6, 8) and d["labels"].tolist() == [0, 0, 0, 1, 1, 1]
        np.testing.assert_allclose(np.linalg.norm(d["features"], axis=1), 1, rtol=1e-5)


def test_extract_unknown_preprocessing(tmp_path, capsys):
    assert main(["extract", "--model", str(tmp_path / "none.keras"), "--data", str(tmp_path),
                 "--preprocessing", "nope", "-o", str(tmp_path / "f.npz")]) == 2
    assert "unknown preprocessing 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "f.npz").exists()


@pytest.mark.slow
def test_train_recipe_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("TFFACE_CACHE", str(tmp_path / "cache"))
    r = tmp_path / "tiny.yaml"
    r.write_text(
        "name: tiny\n"
        "method: recognizer\n"
        "data: {builtin: {num_identities: 4, images_per_identity: 4, image_size: 56}}\n"
        "model: {backbone: mobilenet_v2, backbone_kwargs: {width: 0.25, last_channels: 32}, embedding_dim: 16}\n"
        "train: {epochs: 1, batch_size: 8, optimizer: adamw, learning_rate: 0.001}\n"
    )
    out = tmp_path / "run"
    assert main(["train", str(r), "--out", str(out)]) == 0
    assert (out / "embedder.keras").is_file() and (out / "history.json").is_file()
    assert list((out / "tensorboard").rglob("*tfevents*"))


def test_train_ddl_and_bench_bad_input_exit_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert main(["bench", "r3an", "--seeds", "0", "--out", str(tmp_path / "r.json")]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["bench", "r3an", "--parts", "nope", "--out", str(tmp_path / "r.json")]) == 2


def test_recorded_bench_command_hides_the_real_data_path():
    from tfface.cli import recorded_command

    assert recorded_command(["bench", "recognizers", "--data", "/home/me/faces", "--small"]) == \
        "tfface bench recognizers --data DIR --small"
    assert recorded_command(["bench", "ddl", "--data=/x/y"]) == "tfface bench ddl --data=DIR"
