"""tfface.translation.upgrade / ``tfface upgrade-gallery``: a new index from an old one's stored vectors."""

import json

import keras
import numpy as np
import pytest

from tfface.cli import main
from tfface.errors import ConfigError, DataError
from tfface.export import export_saved_model
from tfface.retrieval import Index
from tfface.retrieval.exact import exact_top_k
from tfface.translation.upgrade import upgrade_gallery

DS, DT, N = 16, 24, 2500


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("upgrade")
    keras.utils.set_random_seed(0)
    inp = keras.Input((DS,), name="source_features")
    model = keras.Model(inp, keras.layers.Dense(DT)(keras.layers.Dense(32, activation="tanh")(inp)))
    vdir = export_saved_model(model, root / "export", name="translator", input_name="source_features",
                              output_name="target_features", input_shape=(DS,))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, DS)).astype("float32")
    ids = np.array([f"person{i // 5:04d}/{i % 5}.png" for i in range(N)])
    Index.build(x, ids, backend="scann", config={"reorder_dtype": "float32"}).save(root / "old")
    old_norm = x / np.linalg.norm(x, axis=1, keepdims=True)  # what the old index stores
    y = model.predict_on_batch(old_norm).astype(np.float64)
    translated = (y / np.linalg.norm(y, axis=1, keepdims=True)).astype("float32")
    queries = rng.normal(size=(50, DT)).astype("float32")
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return {"root": root, "vdir": vdir, "ids": ids, "translated": translated, "queries": queries, "model": model}


def _exact(setup, k):
    _, rows = exact_top_k(setup["queries"], [setup["translated"]], k)
    return setup["ids"][rows]


def test_upgraded_index_matches_exact_search_over_translated_vectors(setup, tmp_path):
    info = upgrade_gallery(setup["vdir"], setup["root"] / "old", tmp_path / "new", batch_size=700, progress=False)
    assert (info["count"], info["old_dim"], info["dim"], info["id_kind"]) == (N, DS, DT, "str")
    assert info["backend"] == "scann" and info["config"]["mode"] == "brute_force"  # 2500 < 20k: size rules
    assert info["config"]["reorder_dtype"] == "float32"  # carried over from the old index
    new = Index.load(tmp_path / "new")
    assert (len(new), new.dim, new.metric) == (N, DT, "cosine")
    np.testing.assert_array_equal(new.ids, setup["ids"])
    np.testing.assert_allclose(new.vectors(), setup["translated"], atol=1e-5)
    res = new.search(setup["queries"], k=5)
    np.testing.assert_array_equal(res.ids, _exact(setup, 5))


def test_exact_backend_and_keras_model(setup, tmp_path):
    upgrade_gallery(setup["model"], setup["root"] / "old", tmp_path / "new", backend="exact", progress=False)
    new = Index.load(tmp_path / "new")
    assert new.backend == "exact"
    np.testing.assert_array_equal(new.search(setup["queries"], k=3).ids, _exact(setup, 3))


def test_bad_inputs(setup, tmp_path):
    wrong = export_saved_model(keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]), tmp_path / "e",
                               name="t8", input_name="source_features", output_name="target_features",
                               input_shape=(8,))
    with pytest.raises(DataError, match=r"old: vectors have dimension 16, but translator .*\[None, 8\]"):
        upgrade_gallery(wrong, setup["root"] / "old", tmp_path / "new", progress=False)
    with pytest.raises(DataError, match=r"no_index: index directory not found"):
        upgrade_gallery(setup["vdir"], tmp_path / "no_index", tmp_path / "new", progress=False)
    with pytest.raises(ConfigError, match=r"is the old index"):
        upgrade_gallery(setup["vdir"], setup["root"] / "old", setup["root"] / "old", progress=False)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("x")
    with pytest.raises(DataError, match=r"taken: exists"):
        upgrade_gallery(setup["vdir"], setup["root"] / "old", tmp_path / "taken", progress=False)

    def nan_at_2000(batch):
        out = np.ones((len(batch), 4), "float32")
        out[2000 - nan_at_2000.row :] = np.nan if nan_at_2000.row + len(batch) > 2000 else 1.0
        nan_at_2000.row += len(batch)
        return out

    nan_at_2000.row = 0
    with pytest.raises(DataError, match=r"row 2000"):
        upgrade_gallery(nan_at_2000, setup["root"] / "old", tmp_path / "new", batch_size=1000, progress=False)
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e", "taken"]  # no temporary files left


def test_cli_upgrade_gallery(setup, tmp_path, capsys):
    out = tmp_path / "cli_new"
    assert main(["upgrade-gallery", "--translator", str(setup["root"] / "export" / "translator"),
                 "--index", str(setup["root"] / "old"), "--out", str(out), "--backend", "exact",
                 "--no-progress"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == N and info["dim"] == DT
    assert main(["index", "info", str(out)]) == 0
    assert main(["upgrade-gallery", "--translator", str(setup["vdir"]), "--index", str(setup["root"] / "old"),
                 "--out", str(out), "--no-progress"]) == 2
    assert "exists" in capsys.readouterr().err
