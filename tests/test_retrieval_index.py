"""tfface.retrieval: Index (ScaNN + exact), updates, save/load, bad input, identification on an index."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tfface.errors import ConfigError, DataError
from tfface.eval.identification import identify
from tfface.experiments.bench_retrieval import clustered_gallery, clustered_queries, recall_at_k
from tfface.retrieval import (
    IncompatibleIndexError,
    Index,
    choose_config,
    exact_top_k,
    identify_with_index,
    index_search_fn,
)


def _numpy_top_k(q: np.ndarray, db: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    dn = db / np.linalg.norm(db, axis=1, keepdims=True)
    s = qn.astype(np.float64) @ dn.astype(np.float64).T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), order


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    q = rng.normal(size=(64, 32)).astype(np.float32)
    return x, q


@pytest.fixture(scope="module")
def ah_gallery():
    """30k clustered vectors: the AH + rescoring path of the size rules."""
    x, _, centres = clustered_gallery(30_000, 64, seed=3)
    q, _ = clustered_queries(centres, 300, seed=4)
    index = Index.build(x, np.arange(x.shape[0]))
    return x, q, index


# ---------------------------------------------------------------- configuration rules
def test_size_rules_and_overrides():
    assert choose_config(19_999, 128).mode == "brute_force"
    assert choose_config(20_000, 128).mode == "ah"
    cfg = choose_config(1_000_000, 256)
    assert (cfg.mode, cfg.num_leaves, cfg.num_leaves_to_search) == ("tree_ah", 1000, 50)
    assert cfg.dimensions_per_block == 2 and cfg.reorder_k > 10
    over = choose_config(1_000_000, 256, {"num_leaves": 2000, "reorder_dtype": "float32"})
    assert (over.num_leaves, over.num_leaves_to_search, over.reorder_dtype) == (2000, 100, "float32")
    assert choose_config(5000, 64, {"mode": "tree_ah"}).num_leaves == 71  # rules follow the forced mode
    with pytest.raises(ConfigError, match="unknown keys"):
        choose_config(1000, 64, {"leaves": 3})
    with pytest.raises(ConfigError, match="num_leaves_to_search"):
        choose_config(200_000, 64, {"num_leaves_to_search": 5000})
    with pytest.raises(ConfigError, match="reorder_dtype"):
        choose_config(50_000, 64, {"reorder_dtype": "int4"})


# ---------------------------------------------------------------- search correctness
def test_exact_backend_matches_numpy_with_blocks_and_mask(small):
    x, q = small
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    keep = np.ones(x.shape[0], bool)
    keep[::3] = False
    s, r = exact_top_k(qn, [xn[:1000], xn[1000:]], 7, keep, db_chunk=333, query_batch=20)
    full = qn.astype(np.float64) @ xn.astype(np.float64).T
    full[:, ~keep] = -np.inf
    ref_r = np.argsort(-full, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(r, ref_r)
    np.testing.assert_allclose(s, np.take_along_axis(full, ref_r, 1), atol=1e-5)
    assert keep[r].all()


def test_brute_force_scann_equals_exact(small):
    x, q = small
    index = Index.build(x, np.arange(x.shape[0]))
    assert index.config.mode == "brute_force"
    approx = index.search(q, k=10)
    exact = index.search(q, k=10, exact=True)
    ref_s, ref_r = _numpy_top_k(q, x, 10)
    np.testing.assert_array_equal(approx.ids, ref_r)
    np.testing.assert_array_equal(exact.ids, ref_r)
    np.testing.assert_allclose(approx.scores, ref_s, atol=1e-5)
    np.testing.assert_allclose(exact.scores, ref_s, atol=1e-5)


def test_ah_recall_against_exact(ah_gallery):
    x, q, index = ah_gallery
    assert index.config.mode == "ah" and index.config.reorder_dtype == "int8"
    approx = index.search(q, k=10)
    exact = index.search(q, k=10, exact=True)
    assert recall_at_k(approx.ids, exact.ids, 10) >= 0.9
    # rescoring gives the exact float32 scores of the entries found
    res = index.search(q[:20], k=10, rescore=True)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q[:20] / np.linalg.norm(q[:20], axis=1, keepdims=True)
    want = np.einsum("qd,qkd->qk", qn, xn[res.ids])
    np.testing.assert_allclose(res.scores, want, atol=1e-5)
    assert (np.diff(res.scores, axis=1) <= 1e-7).all()
    assert index.index_bytes() < x.shape[0] * x.shape[1] * 4  # below raw float32


def test_tree_leaves_to_search_trades_recall(ah_gallery):
    x, q, _ = ah_gallery
    tree = Index.build(x[:10_000], config={"mode": "tree_ah", "num_leaves": 100, "num_leaves_to_search": 5})
    exact = tree.search(q, k=10, exact=True)
    few = recall_at_k(tree.search(q, k=10, leaves_to_search=1).ids, exact.ids, 10)
    many = recall_at_k(tree.search(q, k=10, leaves_to_search=50).ids, exact.ids, 10)
    assert many >= 0.9 and many > few
    with pytest.raises(ConfigError, match="leaves_to_search"):
        tree.search(q, k=10, leaves_to_search=101)


# ---------------------------------------------------------------- updates
@pytest.mark.parametrize("rebuild_fraction", [100.0, 0.0])  # searched through the tail / after a rebuild
def test_upsert_replaces_and_delete_removes(small, rebuild_fraction):
    x, q = small
    index = Index.build(x, np.arange(x.shape[0]), rebuild_fraction=rebuild_fraction)
    first = index.search(q, k=20, exact=True)
    gone = np.unique(first.ids[:, :15])  # the best 15 of every query: the searcher must look past them
    index.delete(gone)
    assert len(index) == x.shape[0] - gone.size
    res = index.search(q, k=10)
    assert not np.isin(res.ids, gone).any()
    assert (res.ids >= 0).all()
    keep = np.setdiff1d(np.arange(x.shape[0]), gone)
    _, ref = _numpy_top_k(q, x[keep], 10)
    np.testing.assert_array_equal(res.ids, keep[ref])
    # upsert: id 5 gets a new vector; an unseen id is inserted
    new = -x[7:8]
    replaced = index.upsert(np.concatenate([new, x[8:9]]), [5, 10_000])
    assert replaced == (0 if 5 in gone else 1) and len(index) == keep.size + 2 - replaced
    hit = index.search(new, k=1)
    assert hit.ids[0, 0] == 5 and hit.scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    old = index.search(x[5:6], k=3)
    assert 5 not in old.ids[0]
    twin = index.search(x[8:9], k=2)
    assert 10_000 in twin.ids[0] and twin.scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_delete_from_ah_searcher_never_returns_deleted(ah_gallery):
    x, q, built = ah_gallery
    index = Index.build(x, np.arange(x.shape[0]), rebuild_fraction=10.0)
    before = index.search(q, k=10)
    gone = np.unique(before.ids[:, :8])
    index.delete(gone)
    res = index.search(q, k=10)
    assert not np.isin(res.ids, gone).any() and (res.ids >= 0).all()
    assert index.pending == gone.size  # tombstones, no rebuild yet


def test_add_duplicate_id_errors_and_leaves_index_unchanged(small):
    x, q = small
    index = Index.build(x[:1000], np.arange(1000))
    before = index.search(q, k=5)
    with pytest.raises(DataError, match="already in the index"):
        index.add(x[1000:1003], [1000, 1001, 3])
    with pytest.raises(DataError, match="duplicate ids"):
        index.add(x[1000:1002], [2000, 2000])
    assert len(index) == 1000 and index.pending == 0
    after = index.search(q, k=5)
    np.testing.assert_array_equal(before.ids, after.ids)
    with pytest.raises(DataError, match="not in the index"):
        index.delete([3, 5000])
    assert 3 in index and len(index) == 1000
    index.add(x[1000:1003])  # int ids continue from the largest
    assert index.ids[-3:].tolist() == [1000, 1001, 1002]


def test_string_ids(small, tmp_path):
    x, q = small
    names = np.array([f"person-{i:04d}/img{i % 3}" for i in range(500)])
    index = Index.build(x[:500], names)
    res = index.search(x[:3], k=2)
    assert res.ids.dtype.kind == "U" and res.ids[:, 0].tolist() == names[:3].tolist()
    index.delete(["person-0001/img1"])
    assert "person-0001/img1" not in index and "person-0002/img2" in index
    with pytest.raises(DataError, match="string ids"):
        index.add(x[500:501], [7])
    index.add(x[500:501], ["a-much-longer-name-than-the-others"])
    loaded = Index.load(index.save(tmp_path / "ix"))
    np.testing.assert_array_equal(loaded.search(q, k=4).ids, index.search(q, k=4).ids)
    assert loaded.id_kind == "str"


# ---------------------------------------------------------------- bad input
def test_wrong_dimension_names_both_dims(small):
    x, q = small
    index = Index.build(x[:100])
    with pytest.raises(DataError, match=r"dimension 31 does not match the index dimension 32"):
        index.search(q[:, :31], k=3)
    with pytest.raises(DataError, match=r"vectors: dimension 33 does not match the index dimension 32"):
        index.add(np.ones((2, 33), np.float32), [500, 501])
    assert len(index) == 100


def test_nan_inf_and_zero_vectors_rejected(small):
    x, q = small
    index = Index.build(x[:100])
    bad = x[100:104].copy()
    bad[2, 5] = np.nan
    with pytest.raises(DataError, match="NaN or Inf .*row 2"):
        index.add(bad, [200, 201, 202, 203])
    with pytest.raises(DataError, match="NaN or Inf"):
        index.upsert(np.full((1, 32), np.inf, np.float32), [0])
    qq = q[:3].copy()
    qq[1, 0] = np.inf
    with pytest.raises(DataError, match="queries: contains NaN or Inf"):
        index.search(qq, k=2)
    with pytest.raises(DataError, match="zero norm"):
        index.add(np.zeros((1, 32), np.float32), [300])
    assert len(index) == 100 and 0 in index and 200 not in index
    with pytest.raises(DataError, match="empty"):
        Index(8).search(np.ones((1, 8)), k=1)


# ---------------------------------------------------------------- persistence
def test_save_load_round_trip_identical(ah_gallery, tmp_path):
    x, q, index = ah_gallery
    index.add(x[:50] * -1, np.arange(40_000, 40_050))  # an unindexed tail is saved as such
    before = index.search(q, k=10)
    path = index.save(tmp_path / "gallery")
    man = json.loads((path / "manifest.json").read_text())
    assert man["dim"] == 64 and man["metric"] == "cosine" and man["count"] == 30_050
    assert man["searcher_rows"] == 30_000 and man["config"]["mode"] == "ah"
    assert man["tfface_version"] and man["format_version"] == 1
    assert {"vectors.npy", "ids.npy", "scann/scann_assets.pbtxt"} <= set(man["files"])
    assert all(len(e["sha256"]) == 64 for e in man["files"].values())
    assert not list(path.rglob("*.pkl"))
    loaded = Index.load(path)
    after = loaded.search(q, k=10)
    np.testing.assert_array_equal(before.ids, after.ids)
    np.testing.assert_array_equal(before.scores, after.scores)
    assert loaded.pending == 50 and len(loaded) == 30_050
    index.delete(np.arange(40_000, 40_050))  # restore the shared fixture


def test_flipped_byte_is_detected_naming_the_file(small, tmp_path):
    x, _ = small
    path = Index.build(x[:200]).save(tmp_path / "ix")
    for rel in ("vectors.npy", "scann/dataset.npy"):
        target = path / rel
        data = bytearray(target.read_bytes())
        data[-7] ^= 0x01
        target.write_bytes(bytes(data))
        with pytest.raises(DataError, match=rf"{rel}: SHA-256 checksum does not match"):
            Index.load(path)
        data[-7] ^= 0x01
        target.write_bytes(bytes(data))
    Index.load(path)  # intact again
    (path / "ids.npy").unlink()
    with pytest.raises(DataError, match=r"ids.npy: listed in the manifest but missing"):
        Index.load(path)


def test_failed_save_leaves_previous_directory_intact(small, tmp_path, monkeypatch):
    x, q = small
    path = Index.build(x[:300]).save(tmp_path / "ix")
    manifest_before = (path / "manifest.json").read_text()
    bigger = Index.load(path)
    bigger.add(x[300:400], np.arange(300, 400))

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr("tfface.retrieval.index.write_manifest", boom)
    with pytest.raises(OSError, match="disk full"):
        bigger.save(path)
    monkeypatch.undo()
    assert (path / "manifest.json").read_text() == manifest_before
    again = Index.load(path)
    assert len(again) == 300
    assert sorted(os.listdir(tmp_path)) == ["ix"]  # no temporary directory left behind
    np.testing.assert_array_equal(again.search(q, k=3).ids, Index.build(x[:300]).search(q, k=3).ids)


def test_newer_format_version_is_refused(small, tmp_path):
    x, _ = small
    path = Index.build(x[:50]).save(tmp_path / "ix")
    man = json.loads((path / "manifest.json").read_text())
    man["format_version"] = 2
    (path / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(IncompatibleIndexError, match="format version 2 .*upgrade tfface"):
        Index.load(path)
    (path / "manifest.json").unlink()
    with pytest.raises(DataError, match="manifest.json: missing"):
        Index.load(path)


def test_save_refuses_to_replace_a_foreign_directory(small, tmp_path):
    x, _ = small
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match="not a tfface index"):
        Index.build(x[:50]).save(tmp_path / "docs")
    assert (tmp_path / "docs" / "thesis.tex").read_text() == "precious"


def test_save_erases_deleted_vectors(small, tmp_path):
    x, _ = small
    index = Index.build(x[:500], rebuild_fraction=100.0)
    index.delete([3])
    path = index.save(tmp_path / "ix")
    stored = np.load(path / "vectors.npy")
    xn = x[3] / np.linalg.norm(x[3])
    assert stored.shape[0] == 499 and not np.isclose(stored @ xn, 1.0, atol=1e-6).any()
    scann_copy = np.load(path / "scann" / "dataset.npy")
    assert not np.isclose(scann_copy @ xn, 1.0, atol=1e-6).any()


# ---------------------------------------------------------------- identification on an index
def test_identify_with_index_agrees_with_exact_identify():
    rng = np.random.default_rng(5)
    x, labels, centres = clustered_gallery(2000, 48, images_per_identity=4, spread=1.0, seed=5)
    first = np.unique(labels, return_index=True)[1]
    gallery, gallery_labels = x[first], labels[first]
    probe, probe_labels = clustered_queries(centres, 300, spread=1.0, seed=6)
    distractors = rng.normal(size=(6000, 48)).astype(np.float32)
    ref = identify(probe, probe_labels, gallery, gallery_labels, distractors, ranks=(1, 5))
    out = identify_with_index(probe, probe_labels, gallery, gallery_labels, distractors, ranks=(1, 5))
    assert out.config["mode"] == "brute_force" and out.database_size == 6500
    assert out.exact.rank_accuracy == ref.rank_accuracy
    assert out.approximate.rank_accuracy == ref.rank_accuracy
    assert out.rank_agreement == 1.0
    assert 0.05 < ref.rank_accuracy[1] < 0.99  # a non-trivial set
    ah = identify_with_index(probe, probe_labels, gallery, gallery_labels, distractors, ranks=(1, 5),
                             config={"mode": "ah"})
    assert ah.config["mode"] == "ah"
    assert ah.exact.rank_accuracy == ref.rank_accuracy
    assert abs(ah.approximate.rank_accuracy[1] - ref.rank_accuracy[1]) <= 0.03


def test_index_search_fn_needs_row_number_ids(small):
    x, _ = small
    with pytest.raises(ConfigError, match="row numbers"):
        index_search_fn(Index.build(x[:10], np.arange(10) + 5))


def test_searcher_from_another_scann_version_is_rebuilt(small, tmp_path):
    x, q = small
    index = Index.build(x[:400])
    path = index.save(tmp_path / "ix")
    man = json.loads((path / "manifest.json").read_text())
    man["scann_version"] = "0.0.1"
    (path / "manifest.json").write_text(json.dumps(man))
    with pytest.warns(UserWarning, match="rebuilt"):
        loaded = Index.load(path)
    np.testing.assert_array_equal(loaded.search(q, k=5).ids, index.search(q, k=5).ids)
    assert loaded.config.mode == "brute_force"
