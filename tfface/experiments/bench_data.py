"""``tfface bench data``: rendering throughput of the built-in faces.

Single-core throughput is measured in a fresh worker process with one BLAS thread (the figure the
foundation issue targets: at least 100 images/s at 112x112); the parallel figure renders with
``workers`` processes, as :func:`tfface.data.builtin.render_dataset` does.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import time

from tqdm.auto import tqdm

from tfface.data.builtin import _single_threaded_blas
from tfface.data.synthetic import FaceDataConfig, default_model, render_identity


def _time_render(size: int, identities: int, images: int, offset: int) -> tuple[int, float]:
    model = default_model()
    cfg = FaceDataConfig(num_identities=identities, images_per_identity=images, image_size=size)
    render_identity(model, cfg, 10_000)  # warm-up: model load and caches
    t0 = time.perf_counter()
    for i in range(offset, offset + identities):
        render_identity(model, cfg, i)
    return identities * images, time.perf_counter() - t0


def bench_data(sizes=(56, 64, 96, 112), identities: int = 40, images: int = 10, workers: int = 2,
               progress: bool = True) -> dict:
    results = []
    # one step per measurement (each size: 1 worker, then ``workers``), to stderr
    bar = tqdm(total=2 * len(sizes), desc="bench data", unit="run", disable=not progress)
    with _single_threaded_blas(), bar:
        ctx = mp.get_context("spawn")
        for size in sizes:
            with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
                n, dt = pool.submit(_time_render, size, identities, images, 0).result()
            results.append({"size": size, "workers": 1, "images": n, "seconds": round(dt, 3),
                            "images_per_s": round(n / dt, 1)})
            bar.set_postfix_str(f"{size}px x1: {n / dt:.0f} img/s")
            bar.update()
            with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                # warm both workers first, then time them rendering disjoint identities together
                list(pool.map(_time_render, [size] * workers, [1] * workers, [1] * workers, [20_000] * workers))
                t0 = time.perf_counter()
                futs = [pool.submit(_time_render, size, identities, images, 100 * (k + 1)) for k in range(workers)]
                n = sum(f.result()[0] for f in futs)
                dt = time.perf_counter() - t0
            results.append({"size": size, "workers": workers, "images": n, "seconds": round(dt, 3),
                            "images_per_s": round(n / dt, 1)})
            bar.set_postfix_str(f"{size}px x{workers}: {n / dt:.0f} img/s")
            bar.update()
    return {"benchmark": "data", "target": "rendering >= 100 images/s at 112x112 on one core", "results": results}
