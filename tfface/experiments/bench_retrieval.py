"""``tfface bench retrieval``: ScaNN at a few settings against exact search, on clustered vectors.

The gallery has identity structure, not uniform noise: ``n / images_per_identity`` identity centres
are drawn from an anisotropic Gaussian (per-dimension scale ``(j + 1) ** -decay``, as learned
embeddings concentrate their variance in few directions) and normalised; each image is
``normalise(centre + noise)`` with ``|noise| ~ spread``. Queries are fresh images of random
identities, so their true neighbours are mostly the mates of their identity. Vectors are generated
in chunks.

Reported per dimension: exact search queries/s (TensorFlow matrix products, batched), and per ScaNN
build setting its build time and index size (bytes per vector, measured from the serialized
searcher's files; raw float32 is ``4 * D``), and per search setting and ``k`` its recall@k against
exact and queries/s. All searches take the whole query batch at once on every core. On a shared
machine wall-clock queries/s move with other jobs' load, so each row also has queries per CPU-second
(process CPU time, all threads), whose ratio to the exact search's is a steadier measure of the work
saved.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfface.retrieval.index import Index
from tfface.retrieval.scann_config import choose_config, scann_version

__all__ = ["bench_retrieval", "clustered_gallery", "clustered_queries", "faiss_version", "recall_at_k"]

TARGET = "recall@10 >= 0.95 at >= 10x the exact search's queries/s, index memory below raw float32"


def _centres(num_ids: int, dim: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    scale = (np.arange(1, dim + 1, dtype=np.float32)) ** -decay
    c = rng.standard_normal((num_ids, dim), dtype=np.float32) * scale
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    return c


def _images(centres: np.ndarray, labels: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    dim = centres.shape[1]
    x = centres[labels] + (spread / math.sqrt(dim)) * rng.standard_normal((labels.size, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def clustered_gallery(
    n: int,
    dim: int,
    *,
    images_per_identity: int = 10,
    spread: float = 0.75,
    decay: float = 0.5,
    seed: int = 0,
    chunk: int = 100_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(vectors [n, dim] float32 normalised, labels [n] int64, centres [n_ids, dim])``, made in chunks."""
    rng = np.random.default_rng(seed)
    num_ids = max(1, math.ceil(n / images_per_identity))
    centres = _centres(num_ids, dim, decay, rng)
    labels = rng.permutation(np.arange(n, dtype=np.int64) % num_ids)
    x = np.empty((n, dim), np.float32)
    for i in range(0, n, chunk):
        x[i : i + chunk] = _images(centres, labels[i : i + chunk], spread, rng)
    return x, labels, centres


def clustered_queries(
    centres: np.ndarray, num: int, *, spread: float = 0.75, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``num`` fresh images of random identities: ``(queries [num, dim], labels [num])``."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, centres.shape[0], num)
    return _images(centres, labels, spread, rng), labels


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """Mean over queries of ``|approx top-k & exact top-k| / k``."""
    a, e = approx_ids[:, :k], exact_ids[:, :k]
    hits = sum(len(set(r.tolist()) & set(t.tolist())) for r, t in zip(a, e, strict=True))
    return hits / (k * a.shape[0])


def _timed(repeats: int, fn, *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    """``(fn(*args, **kwargs), wall seconds, process CPU seconds)`` of the fastest of ``repeats`` calls."""
    best, cpu, out = math.inf, math.inf, None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        wall, used = time.perf_counter() - t0, time.process_time() - c0
        if wall < best:
            best, cpu = wall, used
    return out, best, cpu


def _speed(queries: int, wall: float, cpu: float, exact: tuple[float, float] | None) -> dict[str, float]:
    """Queries/s (wall clock), queries per CPU-second, and both ratios to the exact search's."""
    qps, qpc = queries / wall, queries / max(cpu, 1e-9)
    out = {"qps": round(qps, 1), "queries_per_cpu_second": round(qpc, 1)}
    ref = exact or (qps, qpc)
    out["speedup_vs_exact"] = round(qps / ref[0], 2)
    out["cpu_speedup_vs_exact"] = round(qpc / ref[1], 2)
    return out


def faiss_version() -> str | None:
    """The installed ``faiss`` version, or ``None`` when ``faiss-cpu`` is not installed (extra ``bench``)."""
    try:
        import faiss
    except ImportError:
        return None
    return getattr(faiss, "__version__", "unknown")


def _faiss_bytes(index) -> float:
    import faiss

    return float(faiss.serialize_index(index).nbytes)


def _faiss_rows(x: np.ndarray, q: np.ndarray, exact: dict[int, np.ndarray], ks: Sequence[int],
                target: float, exact_speed: dict[int, tuple[float, float]], hnsw_max_n: int,
                repeats: int) -> list[dict]:
    """FAISS IVF-Flat and HNSW at the first setting reaching ``target`` recall@max(k) (if faiss is installed).

    ``nprobe`` (IVF, ``nlist = sqrt(n)`` like ScaNN's leaves) and ``efSearch`` (HNSW, M=32) are doubled
    until recall@max(k) reaches ``target`` (ScaNN's recall at its default setting); that setting is then
    timed for every ``k``. Bytes per vector are the serialized index's size (``faiss.serialize_index``) / n.
    """
    try:
        import faiss
    except ImportError:
        return []
    n, dim = x.shape
    kmax = max(ks)
    rows: list[dict] = []
    x = np.ascontiguousarray(x, np.float32)
    q = np.ascontiguousarray(q, np.float32)

    def emit(method: str, index, setting: dict, build: float) -> None:
        bpv = round(_faiss_bytes(index) / n, 1)
        for k in ks:
            (_, ids), secs, cpu = _timed(repeats, index.search, q, k)
            rows.append({"method": method, "setting": setting, "k": k,
                         "recall": round(recall_at_k(ids, exact[k], k), 4),
                         **_speed(q.shape[0], secs, cpu, exact_speed[k]),
                         "build_seconds": round(build, 2), "bytes_per_vector": bpv, "matched_recall": target})

    nlist = max(1, int(round(math.sqrt(n))))
    t0 = time.perf_counter()
    quant = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quant, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = x[np.random.default_rng(0).choice(n, min(n, 100 * nlist), replace=False)]
    ivf.train(sample)
    ivf.add(x)
    build = time.perf_counter() - t0
    nprobe = 1
    while True:
        ivf.nprobe = nprobe
        _, ids = ivf.search(q, kmax)
        if recall_at_k(ids, exact[kmax], kmax) >= target or nprobe >= nlist:
            break
        nprobe = min(nlist, 2 * nprobe)
    emit("faiss_ivf_flat", ivf, {"nlist": nlist, "nprobe": nprobe}, build)
    del ivf, quant
    if n <= hnsw_max_n:
        t0 = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.add(x)
        build = time.perf_counter() - t0
        ef = 16
        while True:
            hnsw.hnsw.efSearch = ef
            _, ids = hnsw.search(q, kmax)
            if recall_at_k(ids, exact[kmax], kmax) >= target or ef >= 1024:
                break
            ef *= 2
        emit("faiss_hnsw", hnsw, {"M": 32, "efSearch": ef}, build)
    return rows


def bench_retrieval(
    n: int = 1_000_000,
    dims: Sequence[int] = (128, 256),
    queries: int = 1000,
    ks: Sequence[int] = (1, 10),
    *,
    builds: Sequence[dict[str, Any]] | None = None,
    leaves_factors: Sequence[float] = (0.5, 1.0, 2.0),
    images_per_identity: int = 10,
    spread: float = 0.75,
    repeats: int = 2,
    small: bool = False,
    faiss_hnsw_max_n: int = 200_000,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Benchmark ScaNN against exact search; returns a JSON-ready dict.

    Args:
        n: gallery size per dimension.
        dims: embedding dimensions, one gallery each.
        queries: number of queries (fresh images of gallery identities).
        ks: the ``k`` of recall@k; each is searched (and timed) separately.
        builds: ScaNN override dicts, one searcher each (default: the size rules with int8 and with
            float32 rescoring).
        leaves_factors: for tree searchers, search ``factor * num_leaves_to_search`` leaves.
        repeats: timed repetitions of each search; the fastest counts.
        small: a quick run (``n=120_000``, ``dims=(128,)``, ``queries=500``) to check the code path.
    """
    if small:
        n, dims, queries = 120_000, (128,), 500
    builds = list(builds) if builds is not None else [{}, {"reorder_dtype": "float32"}]
    ks = sorted(set(int(k) for k in ks))
    kmax = ks[-1]
    results: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for dim in dims:
        x, _, centres = clustered_gallery(n, dim, images_per_identity=images_per_identity, spread=spread,
                                          seed=seed + dim)
        q, _ = clustered_queries(centres, queries, spread=spread, seed=seed + dim + 1)
        raw_bpv = 4 * dim
        ref = Index(dim, backend="exact")
        ref.add(x, np.arange(n), progress=progress)
        ref.search(q[:8], k=kmax)  # warm-up (TensorFlow start-up)
        exact_ids: dict[int, np.ndarray] = {}
        exact_speed: dict[int, tuple[float, float]] = {}
        for k in ks:
            res, secs, cpu = _timed(repeats, ref.search, q, k=k)
            exact_ids[k], exact_speed[k] = res.ids, (queries / secs, queries / max(cpu, 1e-9))
            results.append({"dim": dim, "method": "exact_tf", "setting": {}, "k": k, "recall": 1.0,
                            **_speed(queries, secs, cpu, None), "build_seconds": 0.0,
                            "bytes_per_vector": raw_bpv})
        del ref
        gc.collect()
        best: dict[str, Any] | None = None
        for overrides in builds:
            cfg = choose_config(n, dim, overrides)
            t0 = time.perf_counter()
            index = Index.build(x, np.arange(n), config=overrides, progress=progress)
            build_s = time.perf_counter() - t0
            bpv = index.index_bytes() / n
            leaves_list: list[int | None] = [None]
            if cfg.mode == "tree_ah":
                leaves_list = sorted({max(1, min(cfg.num_leaves, round(f * cfg.num_leaves_to_search)))
                                      for f in leaves_factors})
            index.search(q[:8], k=kmax, leaves_to_search=leaves_list[0])  # warm-up
            for leaves in leaves_list:
                for k in ks:
                    res, secs, cpu = _timed(repeats, index.search, q, k=k, leaves_to_search=leaves)
                    row = {
                        "dim": dim, "method": "scann",
                        "setting": {**cfg.to_dict(), **({"leaves_to_search": leaves} if leaves else {})},
                        "k": k, "recall": round(recall_at_k(res.ids, exact_ids[k], k), 4),
                        **_speed(queries, secs, cpu, exact_speed[k]),
                        "build_seconds": round(build_s, 2), "bytes_per_vector": round(bpv, 1),
                    }
                    results.append(row)
                    if k == kmax and row["recall"] >= 0.95 and row["speedup_vs_exact"] >= 10 and bpv < raw_bpv:
                        if best is None or row["qps"] > best["qps"]:
                            best = row
            del index
            gc.collect()
        default = choose_config(n, dim, builds[0])
        matched = [r["recall"] for r in results if r["dim"] == dim and r["method"] == "scann" and r["k"] == kmax
                   and r["setting"].get("leaves_to_search", default.num_leaves_to_search)
                   == default.num_leaves_to_search and r["setting"].get("reorder_dtype") == default.reorder_dtype]
        target = matched[0] if matched else 0.95
        for row in _faiss_rows(x, q, exact_ids, ks, target, exact_speed, faiss_hnsw_max_n, repeats):
            results.append({"dim": dim, **row})
        summary[str(dim)] = {"goal_met": best is not None, "best": best}
        del x, q, centres
        gc.collect()
    out: dict[str, Any] = {
        "benchmark": "retrieval",
        "target": TARGET,
        "params": {"n": n, "dims": list(dims), "queries": queries, "ks": ks, "builds": builds,
                   "leaves_factors": list(leaves_factors), "images_per_identity": images_per_identity,
                   "spread": spread, "repeats": repeats, "seed": seed},
        "scann_version": scann_version(),
        "faiss_version": faiss_version(),
        "results": results,
        "summary": summary,
    }
    if out["faiss_version"] is None:
        out["faiss_note"] = ("faiss not installed (pip install -e '.[bench]' adds faiss-cpu): "
                             "FAISS IVF-Flat and HNSW rows skipped")
    else:
        out["faiss_note"] = (f"FAISS IVF-Flat (nlist = sqrt(n)) and HNSW (M=32, up to {faiss_hnsw_max_n} vectors): "
                             "nprobe / efSearch doubled until recall@max(k) reaches ScaNN's at its default setting")
    try:
        from tfface.experiments.machine import describe, machine_info

        out["machine"] = machine_info()
        out["machine_line"] = describe(out["machine"])
    except Exception:  # pragma: no cover - machine description is best effort
        pass
    return out
