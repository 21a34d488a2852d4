"""``tfface index build|search|add|delete|export|info``: a ScaNN gallery index from feature files.

Register with ``add_index_parser(subparsers)`` from ``tfface/cli.py``; every sub-command sets
``func`` to one of the ``index_*`` functions below, which raise :class:`~tfface.errors.TffaceError`
subclasses on bad input (the CLI turns them into one line and exit status 2).

The writers (``build``, ``add``, ``delete``) hold the index's exclusive lock (``<index>.lock`` beside the
directory, :func:`~tfface.retrieval.locking.index_lock`): ``add`` and ``delete`` across the whole
load-modify-save, ``build`` while it checks the output and saves. A writer waits ``--lock-timeout``
seconds (default 60) for another one, then fails with one line naming the index.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from tfface.errors import ConfigError, DataError
from tfface.retrieval.locking import DEFAULT_LOCK_TIMEOUT

__all__ = [
    "add_index_parser",
    "index_add",
    "index_build",
    "index_delete",
    "index_export",
    "index_info",
    "index_search",
    "load_feature_file",
    "parse_overrides",
]


def load_feature_file(path: str | Path, expected_dim: int | None = None) -> dict[str, Any]:
    """``{"features", "labels", "ids", "paths"}`` of a features ``.npz`` (via :func:`tfface.data.features.load_features`)."""
    from tfface.data.features import load_features

    fs = load_features(path, expected_dim=expected_dim)
    return {"features": fs.features, "labels": fs.labels, "ids": fs.ids, "paths": fs.paths}


def _ids_from(data: dict[str, Any], field: str, path: str) -> np.ndarray | None:
    if field == "row":
        return np.arange(data["features"].shape[0], dtype=np.int64)
    if field == "auto":
        for name in ("ids", "paths"):
            if data.get(name) is not None:
                return np.asarray(data[name])
        return None
    if data.get(field) is None:
        raise DataError(f"{path}: has no '{field}' array to use as ids")
    return np.asarray(data[field])


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["num_leaves=2000", "reorder_dtype=float32"]`` -> a ScaNN override dict (values typed by field)."""
    import dataclasses

    from tfface.retrieval.scann_config import ScannConfig

    types = {f.name: f.type for f in dataclasses.fields(ScannConfig)}
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(types)}")
        t = str(types[key])
        try:
            if "int" in t:
                out[key] = None if raw.lower() == "none" else int(raw)
            elif "float" in t:
                out[key] = float(raw)
            else:
                out[key] = raw
        except ValueError as err:
            raise ConfigError(f"--set {item!r}: {err}") from err
    return out


def _check_build_target(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise DataError(f"{out}: exists; pass --overwrite to replace it")


def index_build(a: argparse.Namespace) -> None:
    """Build an index from ``--features`` and save it to ``-o``."""
    from tfface.retrieval.index import Index
    from tfface.retrieval.locking import index_lock

    out = Path(a.out)
    _check_build_target(out, a.overwrite)
    data = load_feature_file(a.features)
    ids = _ids_from(data, a.id_field, a.features)
    t0 = time.perf_counter()
    index = Index.build(data["features"], ids, metric=a.metric, backend=a.backend,
                        config=parse_overrides(a.set), progress=True)
    secs = time.perf_counter() - t0
    with index_lock(out, a.lock_timeout):
        _check_build_target(out, a.overwrite)  # again: another writer may have made it meanwhile
        index.save(out, progress=True)
    cfg = index.config.to_dict() if index.config else None
    print(f"built {len(index)} x {index.dim} ({index.backend}, {index.metric}) in {secs:.1f} s -> {out}")
    print(json.dumps({"config": cfg, "index_bytes_per_vector": round(index.index_bytes() / len(index), 1)}))


def index_search(a: argparse.Namespace) -> None:
    """Search the queries of ``--features`` in an index directory; optionally write the results."""
    from tfface.retrieval.index import Index

    index = Index.load(a.index, backend="exact" if a.exact else None)
    data = load_feature_file(a.features, expected_dim=index.dim)
    t0 = time.perf_counter()
    res = index.search(data["features"], k=a.k, exact=a.exact, rescore=a.rescore,
                       leaves_to_search=a.leaves, batch_size=a.batch_size, progress=True)
    secs = time.perf_counter() - t0
    q = data["features"].shape[0]
    print(f"searched {q} queries, k={res.ids.shape[1]}, in {secs:.2f} s ({q / max(secs, 1e-9):.0f} queries/s)")
    qids = data.get("ids") if data.get("ids") is not None else data.get("paths")
    if a.output:
        out = Path(a.output)
        from tfface.atomic import atomic_path

        if out.suffix == ".json":
            rows = [{"query": (qids[i].item() if qids is not None else i), "ids": res.ids[i].tolist(),
                     "scores": [round(float(s), 6) for s in res.scores[i]]} for i in range(q)]
            with atomic_path(out) as tmp:
                tmp.write_text(json.dumps(rows) + "\n")
        else:
            arrays = {"ids": res.ids, "scores": res.scores}
            if qids is not None:
                arrays["query_ids"] = np.asarray(qids)
            with atomic_path(out, suffix=".npz") as tmp:
                np.savez(tmp, **arrays)
        print(f"wrote {out}")
    else:
        for i in range(min(q, 5)):
            pairs = ", ".join(f"{j}:{s:.3f}" for j, s in zip(res.ids[i].tolist(), res.scores[i].tolist(), strict=True))
            print(f"{qids[i] if qids is not None else i}: {pairs}")


def index_add(a: argparse.Namespace) -> None:
    """Add (or with ``--upsert`` insert-or-replace) the vectors of ``--features``; save in place."""
    from tfface.retrieval.locking import index_lock

    with index_lock(a.index, a.lock_timeout):
        msg = _add_locked(a)
    print(msg)


def _add_locked(a: argparse.Namespace) -> str:
    from tfface.retrieval.index import Index

    index = Index.load(a.index)
    data = load_feature_file(a.features, expected_dim=index.dim)
    ids = _ids_from(data, a.id_field, a.features)
    if a.upsert:
        if ids is None:
            raise DataError(f"{a.features}: --upsert needs ids (an 'ids' or 'paths' array, or --id-field)")
        replaced = index.upsert(data["features"], ids, progress=True)
        msg = f"upserted {len(ids)} ({replaced} replaced)"
    else:
        index.add(data["features"], ids, progress=True)
        msg = f"added {data['features'].shape[0]}"
    rebuilt = index.maybe_rebuild(progress=True)
    index.save(a.index, progress=True)
    return f"{msg}; index now holds {len(index)}{' (searcher rebuilt)' if rebuilt else ''} -> {a.index}"


def _parse_ids(values: list[str], kind: str | None) -> np.ndarray:
    if kind == "int":
        try:
            return np.array([int(v) for v in values], dtype=np.int64)
        except ValueError as err:
            raise DataError(f"ids: this index holds integer ids ({err})") from err
    return np.array(values, dtype=str)


def index_delete(a: argparse.Namespace) -> None:
    """Delete ids (``--ids`` and/or ``--ids-file``, one per line); save in place (deleted vectors are erased)."""
    from tfface.retrieval.index import Index
    from tfface.retrieval.locking import index_lock

    values = list(a.ids or [])
    if a.ids_file:
        p = Path(a.ids_file)
        if not p.is_file():
            raise DataError(f"{p}: ids file not found")
        values += [line.strip() for line in p.read_text().splitlines() if line.strip()]
    if not values:
        raise ConfigError("index delete: give --ids and/or --ids-file")
    with index_lock(a.index, a.lock_timeout):
        index = Index.load(a.index)
        index.delete(_parse_ids(values, index.id_kind))
        index.maybe_rebuild(progress=True)
        index.save(a.index, progress=True)
    print(f"deleted {len(values)}; index now holds {len(index)} -> {a.index}")


def index_export(a: argparse.Namespace) -> None:
    """Export the gallery for Vertex AI Vector Search (JSONL) or Milvus (NPY/Parquet), in bounded shards."""
    from tfface.retrieval.export import export_index
    from tfface.retrieval.index import Index

    index = Index.load(a.index, backend="exact")
    kwargs: dict[str, Any] = {"max_file_bytes": int(a.max_file_mb * 2**20), "progress": True}
    if a.format == "milvus":
        kwargs["file_format"] = a.milvus_format
    files = export_index(index, a.out, a.format, **kwargs)
    print(f"exported {len(index)} vectors of dimension {index.dim} as {a.format} in {len(files)} file(s) -> {a.out}")


def index_info(a: argparse.Namespace) -> None:
    """Print an index directory's manifest summary (checksums verified)."""
    from tfface.retrieval.index import Index
    from tfface.retrieval.manifest import read_manifest

    man = read_manifest(a.index)
    Index.load(a.index, backend="exact")  # verifies every file
    keys = ("tfface_version", "format_version", "dim", "metric", "backend", "count", "searcher_rows", "id_kind",
            "config", "scann_version", "searcher_bytes")
    print(json.dumps({k: man.get(k) for k in keys}, indent=2))


def add_index_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``tfface index ...`` on the CLI's sub-parsers; returns the ``index`` parser."""
    p = subparsers.add_parser("index", help="ScaNN gallery index: build, search, add/delete, export")
    sub = p.add_subparsers(dest="index_command", required=True)

    def lock_timeout(s: argparse.ArgumentParser) -> None:
        s.add_argument("--lock-timeout", type=float, default=DEFAULT_LOCK_TIMEOUT, metavar="SECONDS",
                       help="wait at most this long for another writer of the index to finish "
                            f"(default {DEFAULT_LOCK_TIMEOUT:g})")

    def id_field(s: argparse.ArgumentParser, default: str) -> None:
        s.add_argument("--id-field", default=default, choices=["auto", "ids", "paths", "labels", "row"],
                       help="array of the features file used as ids (auto: ids, else paths, else row numbers)")

    s = sub.add_parser("build", help="build an index from a features .npz")
    s.add_argument("--features", required=True, help="features .npz (features [N, D], optional ids/paths)")
    s.add_argument("-o", "--out", required=True, help="index directory to write")
    s.add_argument("--metric", default="cosine", choices=["cosine", "dot_product"])
    s.add_argument("--backend", default="scann", choices=["scann", "exact"])
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="ScaNN override, e.g. --set num_leaves=2000 --set reorder_dtype=float32")
    s.add_argument("--overwrite", action="store_true", help="replace an existing index directory")
    id_field(s, "auto")
    lock_timeout(s)
    s.set_defaults(func=index_build)

    s = sub.add_parser("search", help="search the vectors of a features .npz")
    s.add_argument("index", help="index directory")
    s.add_argument("--features", required=True, help="query features .npz")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--exact", action="store_true", help="exact search (the reference)")
    s.add_argument("--rescore", action="store_true", help="exact float32 scores for the entries found")
    s.add_argument("--leaves", type=int, default=None, help="tree leaves to search (tree_ah indexes)")
    s.add_argument("--batch-size", type=int, default=10_000)
    s.add_argument("-o", "--output", help="write results: .json, or .npz (ids, scores, query_ids)")
    s.set_defaults(func=index_search)

    s = sub.add_parser("add", help="add (or --upsert) the vectors of a features .npz; saves in place")
    s.add_argument("index", help="index directory")
    s.add_argument("--features", required=True)
    s.add_argument("--upsert", action="store_true", help="replace entries whose id exists instead of failing")
    id_field(s, "auto")
    lock_timeout(s)
    s.set_defaults(func=index_add)

    s = sub.add_parser("delete", help="delete ids; saves in place (deleted vectors leave the directory)")
    s.add_argument("index", help="index directory")
    s.add_argument("--ids", nargs="+", help="ids to delete")
    s.add_argument("--ids-file", help="text file, one id per line")
    lock_timeout(s)
    s.set_defaults(func=index_delete)

    s = sub.add_parser("export", help="export for Vertex AI Vector Search (JSONL) or Milvus (NPY/Parquet)")
    s.add_argument("index", help="index directory")
    s.add_argument("--format", required=True, choices=["vertex", "milvus"])
    s.add_argument("-o", "--out", required=True, help="new output directory")
    s.add_argument("--max-file-mb", type=float, default=512.0, help="bound on each file's size (MiB)")
    s.add_argument("--milvus-format", default="npy", choices=["npy", "parquet"],
                   help="Milvus column files (parquet needs pyarrow)")
    s.set_defaults(func=index_export)

    s = sub.add_parser("info", help="print an index directory's manifest summary (verifies checksums)")
    s.add_argument("index", help="index directory")
    s.set_defaults(func=index_info)
    return p
