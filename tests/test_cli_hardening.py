"""Hardening: unsafe model files and pickled .npz are refused in one line; balanced evaluation pairs and a
short eval table; alignment (or a warning) for images of another size than the model's; progress bars;
the renderer without a ``__main__`` guard."""

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from tfface.cli import main
from tfface.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def lambda_model(tmp_path):
    """A .keras file holding a Lambda layer (a Python function Keras' safe mode refuses to load)."""
    import keras

    inp = keras.Input((56, 56, 3), name="images")
    x = keras.layers.Dense(8)(keras.layers.GlobalAveragePooling2D()(inp))
    out = keras.layers.Lambda(lambda t: t * 2.0)(x)
    path = tmp_path / "lam.keras"
    keras.Model(inp, out).save(path)
    return path


def _features(path, n_ids=20, per_id=4, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_ids), per_id)
    feats = (rng.normal(size=(n_ids, dim))[labels] + 0.3 * rng.normal(size=(len(labels), dim))).astype(np.float32)
    np.savez(path, features=feats, labels=labels)
    return path


@pytest.mark.parametrize("command", ["extract", "export", "translate"])
def test_lambda_model_refused_in_one_line(command, lambda_model, tmp_path, capsys):
    argv = {
        "extract": ["extract", "--model", str(lambda_model), "--data", str(tmp_path / "faces.npz"),
                    "--preprocessing", "tfface56", "-o", str(tmp_path / "f.npz")],
        "export": ["export", "model", str(lambda_model), "--out", str(tmp_path / "serving")],
        "translate": ["translate", "--translator", str(lambda_model), "--in",
                      str(_features(tmp_path / "old.npz")), "--out", str(tmp_path / "new.npz"),
                      "--no-progress"],
    }[command]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "lam.keras" in err and "Lambda" in err
    assert "Traceback" not in err and "safe_mode=False" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "serving").exists() and not (tmp_path / "new.npz").exists()


def test_text_file_named_npz_refused_without_pointing_to_pickle(tmp_path, capsys):
    bad = tmp_path / "notes.npz"
    bad.write_text("this is not an npz\n")
    assert main(["eval", "--probe", str(bad), "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert "notes.npz" in err and "not an .npz" in err
    assert "allow_pickle" not in err and "pickle.load" not in err
    from tfface.data.sources import load_images

    with pytest.raises(DataError) as e:
        load_images(bad)
    assert "notes.npz" in str(e.value) and "allow_pickle" not in str(e.value)


def test_pickled_npz_member_refused_without_pointing_to_pickle(tmp_path, capsys):
    bad = tmp_path / "objects.npz"
    np.savez(bad, features=np.ones((2, 3), np.float32), labels=np.array([0, 1]),
             paths=np.array([{"a": 1}, None], dtype=object))
    assert main(["eval", "--probe", str(bad), "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert "objects.npz" in err and "allow_pickle" not in err


def test_eval_pairs_are_balanced_and_the_output_is_a_short_table(tmp_path, capsys):
    probe = _features(tmp_path / "f.npz")  # 20 x 4: only 120 genuine pairs
    out = tmp_path / "ev"
    capsys.readouterr()
    assert main(["eval", "--probe", str(probe), "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    ver = rep["verification"]
    assert ver["num_positive"] == ver["num_negative"] == 120
    text = capsys.readouterr().out
    assert len(text.splitlines()) <= 25
    for key in ("accuracy", "AUC", "EER", "TAR@FAR=0.01", "rank-1", "rank-5", "without distractors",
                "120 genuine / 120 impostor pairs", str(out / "report.json")):
        assert key in text, key
    assert not text.lstrip().startswith("{")


def test_eval_table_with_distractors(tmp_path, capsys):
    probe = _features(tmp_path / "f.npz")
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", features=rng.normal(size=(30, 16)).astype(np.float32), labels=np.full(30, -1))
    capsys.readouterr()
    assert main(["eval", "--probe", str(probe), "--distractors", str(tmp_path / "d.npz"),
                 "--out", str(tmp_path / "ev")]) == 0
    text = capsys.readouterr().out
    assert "with 30 distractors" in text and "without distractors" in text


def _shifted_faces():
    """Rendered 56 px faces pasted at an offset into 90 x 80 canvases, with their landmarks moved along."""
    from tfface.data.builtin import render_dataset
    from tfface.data.synthetic import FaceDataConfig

    data = render_dataset(FaceDataConfig(num_identities=2, images_per_identity=2, image_size=56),
                          use_cache=False, workers=1, progress=False)
    big = np.zeros((len(data), 90, 80, 3), np.uint8)
    big[:, 20:76, 12:68] = data.images
    return data.images, big, data.landmarks5 + np.array([12.0, 20.0], np.float32)


def test_embed_aligns_other_sizes_with_landmarks():
    from tfface.embed import Embedder

    small, big, lms = _shifted_faces()
    emb = Embedder.from_callable(lambda x: x.reshape(len(x), -1), "tfface56")
    ref = emb.embed(small, normalize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # aligned: no resize warning
        aligned = emb.embed(big, normalize=False, landmarks5=lms)
    with pytest.warns(UserWarning):
        stretched = emb.embed(big, normalize=False)
    err_aligned = np.abs(aligned - ref).mean()
    assert err_aligned < 0.2  # values in [-1, 1]; the landmarks jitter around the template
    assert np.abs(stretched - ref).mean() > 2 * err_aligned, (np.abs(stretched - ref).mean(), err_aligned)


def test_embed_warns_once_naming_both_sizes_without_landmarks():
    from tfface.embed import Embedder

    _, big, _ = _shifted_faces()
    emb = Embedder.from_callable(lambda x: x.reshape(len(x), -1), "tfface56")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb.embed(big, batch_size=1)  # 4 batches, one warning
    msgs = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(msgs) == 1
    assert "90x80" in msgs[0] and "56x56" in msgs[0] and "without alignment" in msgs[0]


def test_extract_aligns_rendered_faces_and_shows_progress(tmp_path, capsys):
    import keras

    inp = keras.Input((56, 56, 3), name="images")
    keras.Model(inp, keras.layers.Dense(8)(keras.layers.GlobalAveragePooling2D()(inp))).save(tmp_path / "m.keras")
    faces = tmp_path / "faces.npz"
    assert main(["render", "--identities", "2", "--images", "2", "--size", "64", "--workers", "1",
                 "-o", str(faces)]) == 0
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the set has landmarks: aligned, no resize warning
        assert main(["extract", "--model", str(tmp_path / "m.keras"), "--data", str(faces),
                     "--preprocessing", "tfface56", "-o", str(tmp_path / "f.npz")]) == 0
    assert "embed keras:m.keras" in capsys.readouterr().err  # the progress bar
    with np.load(tmp_path / "f.npz") as d:
        assert d["features"].shape == (4, 8)


def test_bench_data_shows_progress(capsys):
    from tfface.experiments.bench_data import bench_data

    bench_data(sizes=(56,), identities=1, images=1, workers=1)
    err = capsys.readouterr().err
    assert "bench data" in err and "2/2" in err


def test_render_from_a_script_without_main_guard(tmp_path):
    """Run as a script, the quickstart snippet used to die with BrokenProcessPool (spawned workers re-ran it)."""
    script = tmp_path / "snippet.py"
    script.write_text(textwrap.dedent("""
        from tfface.data.builtin import render_dataset
        from tfface.data.synthetic import FaceDataConfig

        data = render_dataset(FaceDataConfig(num_identities=4, images_per_identity=2, image_size=56),
                              use_cache=False, workers=2)
        print("shape", data.images.shape)
    """))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TFFACE_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "shape (8, 56, 56, 3)" in r.stdout
    assert "BrokenProcessPool" not in r.stderr and "guard" in r.stderr


def test_lambda_translator_and_pretrained_embedder_refused_in_one_line(lambda_model, tmp_path, capsys):
    """The other two commands that load a model: upgrade-gallery (a translator) and train (a pretrained one)."""
    import keras

    from tfface.retrieval import Index

    inp = keras.Input((16,), name="source_features")
    keras.Model(inp, keras.layers.Lambda(lambda t: t * 2.0)(inp)).save(tmp_path / "lam_t.keras")
    feats = np.random.default_rng(0).normal(size=(50, 16)).astype("float32")
    Index.build(feats, np.arange(50), backend="exact").save(tmp_path / "ix")
    (tmp_path / "ddl.yaml").write_text(f"name: d\nmethod: ddl\npretrained: {{embedder: {lambda_model}}}\n")
    for argv, name in ((["upgrade-gallery", "--translator", str(tmp_path / "lam_t.keras"), "--index",
                         str(tmp_path / "ix"), "--out", str(tmp_path / "new"), "--no-progress"], "lam_t.keras"),
                       (["train", str(tmp_path / "ddl.yaml"), "--out", str(tmp_path / "run")], "lam.keras")):
        capsys.readouterr()
        assert main(argv) == 2
        err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("tfface ")]
        assert len(err) == 1 and name in err[0] and "Lambda" in err[0], err
    assert not (tmp_path / "new").exists()


def test_saved_embedder_loads_in_a_fresh_interpreter(tmp_path):
    """`tfface train-ddl` after `tfface train` died with "Could not locate class EmbeddingHead": the saved
    embedder was loaded without the package's layers registered. Loading goes through
    tfface.keras_files, in a process that imported nothing else of tfface."""
    from tfface.methods.recognizer import build_recognizer

    model = build_recognizer(backbone="mobilenet_v2", input_shape=(56, 56, 3), embedding_dim=8, num_classes=3,
                             backbone_kwargs={"width": 0.25, "last_channels": 16, "blocks": [[16, 1, 2]]})
    model.embedding_model().save(tmp_path / "emb.keras")
    code = ("import sys; from tfface.keras_files import load_keras_file\n"
            "m = load_keras_file(sys.argv[1]); assert 'tfface.nets' in sys.modules\n"
            "print(type(m.get_layer('embedding_head')).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "emb.keras")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "EmbeddingHead"


def test_builtin_data_docstring_example_runs(tmp_path, monkeypatch):
    """The example in tfface.data.builtin's docstring once imported FaceDataConfig from a module that does
    not export it; run it as written (its 20 x 5 images at 64 px)."""
    import tfface.data.builtin as builtin

    monkeypatch.setenv("TFFACE_CACHE", str(tmp_path))
    block = builtin.__doc__.split("Example::", 1)[1]
    lines = [line[4:] for line in block.splitlines() if line.startswith("    ")]
    assert lines and lines[0].startswith("from tfface")
    ns: dict = {}
    exec("\n".join(lines[:-1]) + f"\n_result = ({lines[-1]})", ns)  # noqa: S102 - our own docstring
    shape, yaw = ns["_result"]
    assert shape == (100, 64, 64, 3) and len(yaw) == 3


def test_demo_translators_train_with_per_epoch_progress(monkeypatch):
    """The demo trained FC and R3AN for minutes in silence; they now print a line per epoch (verbose=2)."""
    import tfface.experiments.translators as translators

    seen = {}

    def fake(config, pairs, sets, epochs, batch_size, out_dir=None, verbose=0, **kw):
        name = config if isinstance(config, str) else config.variant
        seen[name] = verbose
        if name == "r3an":
            raise StopIteration  # the translators' loop is all this test needs
        return type("Result", (), {"seconds": 0.0, "parameters": 0})(), {"probe_transform_top1": 0.0}, (None, None)

    monkeypatch.setattr(translators, "train_and_evaluate", fake)
    monkeypatch.setattr("tfface.methods.r3an.data.build_pairs", lambda *a, **k: type(
        "Pairs", (), {"source_dim": 4, "target_dim": 4, "__len__": lambda self: 4})())
    from tfface.experiments import demo_r3an

    class Faces:
        images = np.zeros((4, 64, 64, 3), np.uint8)
        labels = np.array([0, 0, 1, 1])

    class Emb:
        def embed(self, images, **kw):
            return np.ones((len(images), 4), np.float32)

    with pytest.raises(StopIteration):
        demo_r3an.run_translation(Faces, Faces, Faces, Emb(), Emb(), Path("/nonexistent"), quick=True)
    assert seen == {"linear": 2, "fc": 2, "r3an": 2}
