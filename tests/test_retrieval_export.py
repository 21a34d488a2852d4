"""tfface.retrieval export (Vertex AI JSONL, Milvus NPY/Parquet) and the ``tfface index`` commands."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from tfface.errors import ConfigError, DataError
from tfface.retrieval import Index, export_index, export_milvus, export_vertex
from tfface.retrieval.commands import add_index_parser
from tfface.retrieval.export import parquet_available


@pytest.fixture(scope="module")
def gallery():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_vertex_jsonl_records_and_shard_bound(gallery, tmp_path):
    ids = np.arange(1000, 1300)
    bound = 40_000
    files = export_vertex(gallery, ids, tmp_path / "vertex", max_file_bytes=bound)
    assert len(files) > 1 and all(f.suffix == ".json" for f in files)
    assert sorted(p.name for p in (tmp_path / "vertex").iterdir()) == sorted(f.name for f in files)
    seen = {}
    for f in files:
        assert f.stat().st_size <= bound
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            assert set(rec) == {"id", "embedding"} and isinstance(rec["id"], str)
            assert len(rec["embedding"]) == 16 and all(isinstance(v, float) for v in rec["embedding"])
            seen[rec["id"]] = np.array(rec["embedding"], dtype=np.float32)
    assert sorted(seen) == sorted(str(i) for i in ids)
    got = np.stack([seen[str(i)] for i in ids])
    np.testing.assert_array_equal(got, gallery)  # 9 significant digits round-trip float32 exactly
    with pytest.raises(ConfigError, match="smaller than one record"):
        export_vertex(gallery, ids, tmp_path / "tiny", max_file_bytes=50)
    assert not (tmp_path / "tiny").exists()
    with pytest.raises(DataError, match="not empty"):
        export_vertex(gallery, ids, tmp_path / "vertex")


def test_milvus_npy_shards(gallery, tmp_path):
    ids = np.array([f"face-{i}" for i in range(300)])
    bound = 5000
    shards = export_milvus(gallery, ids, tmp_path / "milvus", max_file_bytes=bound)
    assert len(shards) > 1
    got_ids, got_vec = [], []
    for files in shards:
        assert [f.name for f in files] == ["id.npy", "embedding.npy"]
        assert all(f.stat().st_size <= bound for f in files)
        got_ids.append(np.load(files[0], allow_pickle=False))
        got_vec.append(np.load(files[1], allow_pickle=False))
    np.testing.assert_array_equal(np.concatenate(got_ids), ids)
    np.testing.assert_array_equal(np.concatenate(got_vec), gallery)
    listing = json.loads((tmp_path / "milvus" / "milvus_files.json").read_text())
    assert listing["files"][0] == ["part-00000/id.npy", "part-00000/embedding.npy"] and listing["dim"] == 16


def test_milvus_parquet(gallery, tmp_path):
    ids = np.arange(300)
    if not parquet_available():
        with pytest.raises(ConfigError, match="pyarrow"):
            export_milvus(gallery, ids, tmp_path / "pq", file_format="parquet")
        assert not (tmp_path / "pq").exists()
        return
    import pyarrow.parquet as pq

    shards = export_milvus(gallery, ids, tmp_path / "pq", file_format="parquet", max_file_bytes=200_000)
    table = pq.read_table(shards[0][0])
    assert table.column_names == ["id", "embedding"]


def test_export_index_only_live_entries(gallery, tmp_path):
    index = Index.build(gallery, np.arange(300), backend="exact")
    index.delete([0, 1, 2])
    shards = export_index(index, tmp_path / "m", "milvus")
    exported = np.concatenate([np.load(f[0]) for f in shards])
    assert exported.size == 297 and not np.isin([0, 1, 2], exported).any()
    with pytest.raises(ConfigError, match="format"):
        export_index(index, tmp_path / "x", "csv")


def _cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="tfface")
    add_index_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_index_commands_end_to_end(gallery, tmp_path, capsys):
    feats = tmp_path / "gallery.npz"
    np.savez(feats, features=gallery[:200], labels=np.arange(200) % 20,
             paths=np.array([f"img/{i}.png" for i in range(200)]))
    more = tmp_path / "more.npz"
    np.savez(more, features=gallery[200:], labels=np.zeros(100, np.int64),
             paths=np.array([f"img/{i}.png" for i in range(200, 300)]))
    ix = tmp_path / "ix"
    _cli(["index", "build", "--features", str(feats), "-o", str(ix)])
    _cli(["index", "add", str(ix), "--features", str(more)])
    with pytest.raises(DataError, match="already in the index"):
        _cli(["index", "add", str(ix), "--features", str(more)])
    _cli(["index", "delete", str(ix), "--ids", "img/0.png", "img/250.png"])
    out = tmp_path / "res.json"
    _cli(["index", "search", str(ix), "--features", str(more), "-k", "3", "-o", str(out)])
    rows = json.loads(out.read_text())
    assert len(rows) == 100 and rows[0]["query"] == "img/200.png" and rows[0]["ids"][0] == "img/200.png"
    assert all("img/250.png" not in r["ids"] for r in rows)
    _cli(["index", "export", str(ix), "--format", "vertex", "-o", str(tmp_path / "v"), "--max-file-mb", "0.01"])
    n = sum(len(f.read_text().splitlines()) for f in (tmp_path / "v").glob("*.json"))
    assert n == 298
    _cli(["index", "info", str(ix)])
    assert '"count": 298' in capsys.readouterr().out
    bad = tmp_path / "bad.npz"
    np.savez(bad, features=np.ones((2, 15), np.float32), labels=np.zeros(2, np.int64))
    with pytest.raises(DataError, match="15"):
        _cli(["index", "search", str(ix), "--features", str(bad)])


def test_cli_overrides_are_typed_and_checked():
    from tfface.retrieval.commands import parse_overrides

    assert parse_overrides(["num_leaves=2000", "reorder_dtype=float32", "anisotropic-quantization-threshold=0.3"]) == {
        "num_leaves": 2000, "reorder_dtype": "float32", "anisotropic_quantization_threshold": 0.3}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["leaves=3"])
    with pytest.raises(ConfigError, match="num_leaves=many"):
        parse_overrides(["num_leaves=many"])
