"""``tfface bench recognizers``: the shipped presets (or any recognizer runs) on held-out built-in identities.

For each model, on identities never seen in training (offset 100 000, distractors at offset 200 000,
rendered with the default nuisances of the training data):

- **identification**: gallery = the first image of each test identity plus N one-image distractor
  identities (N = 2000 and 10 000), probes = the other images; rank-1;
- **verification**: TAR at FAR 1e-3 and 1e-4 over *all* pairs of the test images (with 200 x 6
  images: 3000 genuine, 717 000 impostor pairs, so FAR 1e-4 allows ~72 false accepts), and the 10-fold
  accuracy on balanced pairs (3000 + 3000);
- **nuisance sweep**: the same test identities rendered again with wide nuisances (yaw +-75, resolution
  factors 1-8, blur up to 1.5 px, expression strength up to 1.0) and once as sketches; probes binned by
  each image's recorded factor against the photo gallery with 2000 distractors: rank-1 per bin. These are
  the hard subsets DDL (yaw, resolution) and WSGAN (sketch) need;
- **real faces** (``--data`` a folder holding ``orl-att-faces/orl_faces`` and optionally
  ``cuhk-cufs-student-64px/photo_A64``, or the ORL folder itself): ORL leave-one-out rank-1 (each image
  against all 399 others, plus the CUFS photos as distractors). Faces are resized to the model's input
  (no landmarks on these folders), so this measures how far a recognizer trained on renders carries.

A preset is stored in float16; ``runs`` (``name=run_dir``) evaluates a training run's float32
``embedder.keras`` beside it, which shows what float16 costs and is how ``tfface train preset_*``
reproductions are checked against the shipped figures.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfface.data.synthetic import FaceDataConfig

__all__ = ["RecognizerBenchConfig", "bench_recognizers", "evaluate_recognizer", "to_markdown"]


@dataclass(frozen=True)
class RecognizerBenchConfig:
    test_identities: int = 200
    test_images: int = 6
    distractors: tuple[int, ...] = (2000, 10_000)
    pairs: int = 3000
    sweep_images: int = 8
    image_size: int = 64
    far_targets: tuple[float, ...] = (1e-3, 1e-4)


FULL = RecognizerBenchConfig()
SMALL = RecognizerBenchConfig(test_identities=20, test_images=3, distractors=(50, 200), pairs=200, sweep_images=3)

#: Wide nuisances of the sweep (each image's draw is recorded and binned).
SWEEP = dict(yaw=(-75.0, 75.0), resolution_factors=(1, 2, 4, 8), blur=(0.0, 1.5), expression_strength=1.0)
BINS = {
    "yaw": [0, 15, 30, 45, 60, 76],  # |yaw| in degrees
    "resolution_factor": [1, 2, 4, 8, 9],
    "blur": [0.0, 0.5, 1.0, 1.51],
    "expression": [0.0, 0.5, 1.0, 1.5, 10.0],  # largest active expression weight x number active (L1)
}


def _say(msg: str) -> None:
    print(f"[bench recognizers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def held_out_sets(cfg: RecognizerBenchConfig, base: FaceDataConfig | None = None, progress: bool = True) -> dict:
    """The rendered held-out sets: ``test``, ``distractors`` (max N), ``sweep`` and ``sketch``."""
    from tfface.data.builtin import render_dataset

    base = base or FaceDataConfig(num_identities=cfg.test_identities, images_per_identity=cfg.test_images,
                                  image_size=cfg.image_size)
    test_cfg = base.replace(num_identities=cfg.test_identities, images_per_identity=cfg.test_images,
                            identity_offset=100_000, seed=1)
    out = {"test": render_dataset(test_cfg, progress=progress),
           "distractors": render_dataset(base.replace(num_identities=max(cfg.distractors), images_per_identity=1,
                                                      identity_offset=200_000, seed=1), progress=progress)}
    # the same identities (same world seed) under other nuisances; image j of every render draws from the
    # same stream, so image 0 (the test set's gallery image) is dropped from these probe sets
    wide = dataclasses.replace(base.nuisance, **SWEEP)
    keep = lambda d: d.subset(np.flatnonzero(_image_index(d.labels) > 0))  # noqa: E731
    out["sweep"] = keep(render_dataset(test_cfg.replace(images_per_identity=cfg.sweep_images + 1, nuisance=wide),
                                       progress=progress))
    out["sketch"] = keep(render_dataset(test_cfg.replace(images_per_identity=max(2, cfg.sweep_images // 2) + 1,
                                                         nuisance=dataclasses.replace(base.nuisance, style="sketch")),
                                        progress=progress))
    return out


def _image_index(labels: np.ndarray) -> np.ndarray:
    """Each image's index within its identity (the renderer's ``j``; sets are stored identity-major)."""
    labels = np.asarray(labels)
    starts = np.r_[0, np.flatnonzero(np.diff(labels)) + 1]
    idx = np.arange(len(labels))
    return idx - np.repeat(starts, np.diff(np.r_[starts, len(labels)]))


def _rank1(probe, probe_labels, gallery, gallery_labels, distractors=None) -> float:
    from tfface.eval.identification import identify

    return float(identify(probe, probe_labels, gallery, gallery_labels, distractors=distractors,
                          ranks=(1,)).rank_accuracy[1])


def _expression_amount(expr: np.ndarray) -> np.ndarray:
    e = np.asarray(expr, np.float64)
    return np.abs(e).sum(axis=1) if e.ndim == 2 else np.abs(e)


def evaluate_recognizer(embedder, sets: dict, cfg: RecognizerBenchConfig) -> dict:
    """Every metric of the module docstring for one :class:`tfface.embed.Embedder`."""
    from tfface.eval.evaluate import gallery_split
    from tfface.eval.pairs import make_pairs
    from tfface.eval.verification import verification, verification_scores

    test, dis = sets["test"], sets["distractors"]
    t0 = time.perf_counter()
    f = embedder.embed(test.images)
    d = embedder.embed(dis.images)
    embed_s = time.perf_counter() - t0
    lab = np.asarray(test.labels)
    g, p = gallery_split(lab)
    out: dict = {"rank1": {}, "tar_at_far": {}}
    for n in cfg.distractors:
        out["rank1"][str(n)] = _rank1(f[p], lab[p], f[g], lab[g], d[:n])
    iu = np.triu_indices(len(lab), 1)
    scores = np.einsum("ij,ij->i", f[iu[0]], f[iu[1]])
    same = lab[iu[0]] == lab[iu[1]]
    ver_all = verification_scores(scores, same, far_targets=cfg.far_targets)
    out["tar_at_far"] = {f"{k:g}": v for k, v in ver_all.tar_at_far.items()}
    out["pairs_all"] = {"genuine": int(same.sum()), "impostor": int((~same).sum())}
    n_pos = min(cfg.pairs, int(same.sum()))
    i1, i2, issame = make_pairs(lab, n_pos, n_pos, seed=0)
    ver = verification(f[i1], f[i2], issame)
    out["verification_10fold"] = {"accuracy": ver.accuracy, "std": ver.accuracy_std, "pairs": int(len(issame))}
    # the nuisance sweep: probes from the wide and the sketch renders vs the photo gallery (+ 2000 distractors)
    n_d = d[: min(cfg.distractors)]
    sweep, sketch = sets["sweep"], sets["sketch"]
    fs = embedder.embed(sweep.images)
    slab = np.asarray(sweep.labels)
    factors = {"yaw": np.abs(sweep.nuisance["yaw"]), "resolution_factor": sweep.nuisance["resolution_factor"],
               "blur": sweep.nuisance["blur"], "expression": _expression_amount(sweep.nuisance["expression"])}
    table: dict = {}
    for name, values in factors.items():
        edges = BINS[name]
        rows = {}
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            m = (values >= lo) & (values < hi)
            if m.sum() == 0:
                continue
            key = f"{lo:g}" if name == "resolution_factor" else f"[{lo:g}, {hi:g})"
            rows[key] = {"rank1": _rank1(fs[m], slab[m], f[g], lab[g], n_d), "probes": int(m.sum())}
        table[name] = rows
    fk = embedder.embed(sketch.images)
    table["style"] = {"photo (default nuisances)": {"rank1": out["rank1"][str(min(cfg.distractors))],
                                                    "probes": int(len(p))},
                      "sketch": {"rank1": _rank1(fk, np.asarray(sketch.labels), f[g], lab[g], n_d),
                                 "probes": int(len(sketch))}}
    out["sweep"] = table
    out["embed_images_per_s"] = (len(f) + len(d)) / max(embed_s, 1e-9)
    return out


def real_faces(embedder, data: str | Path) -> dict:
    """ORL leave-one-out rank-1 (+ CUFS photos as distractors when present); see the module docstring."""
    from tfface.data.sources import load_images

    root = Path(data)
    orl = next((q for q in (root / "orl-att-faces" / "orl_faces", root / "orl_faces", root) if (q / "s1").is_dir()),
               None)
    if orl is None:
        return {"skipped": f"no ORL folder (s1 ... s40) under {root}"}
    size = int(embedder.preprocessing.model_input_shape[0])
    images, labels, _ = load_images(orl, size=size, progress=False)
    f = embedder.embed(images)
    out = {"data": "ORL (AT&T) faces", "images": int(len(labels)), "identities": int(len(np.unique(labels))),
           "alignment": f"none (resized to {size}x{size})"}
    cufs = root / "cuhk-cufs-student-64px" / "photo_A64"
    dis = None
    if cufs.is_dir():  # a flat folder of one photo per identity
        from tfface.data.image_folder import EXTENSIONS, load_image

        files = sorted(q for q in cufs.iterdir() if q.suffix.lower() in EXTENSIONS)
        dis = embedder.embed(np.stack([load_image(q, size) for q in files]))
        out["distractors"] = int(len(dis))
    s = f @ f.T
    np.fill_diagonal(s, -np.inf)
    best = s.max(axis=1)
    hit = labels[s.argmax(axis=1)] == labels
    out["leave_one_out_rank1"] = float(hit.mean())
    if dis is not None:
        out["leave_one_out_rank1_with_distractors"] = float((hit & (best > (f @ dis.T).max(axis=1))).mean())
    return out


def _load_models(presets: list[str], runs: list[str]) -> dict:
    from tfface.embed import Embedder
    from tfface.keras_files import load_keras_file
    from tfface.presets import load

    models = {name: load(name) for name in presets}
    for spec in runs:
        name, _, path = spec.partition("=")
        if not path:
            name, path = Path(spec).name, spec
        model = load_keras_file(Path(path) / "embedder.keras", what=f"run {name}")
        models[name] = Embedder.from_keras(model, f"tfface{int(model.input_shape[1])}", name=name)
    return models


def bench_recognizers(small: bool = False, presets: list[str] | None = None, runs: list[str] | None = None,
                      data: str | None = None) -> dict:
    """Evaluate presets (default: every shipped one) and runs; the CLI adds ``machine`` and writes the JSON."""
    from tfface.presets import available, info

    cfg = SMALL if small else FULL
    presets = list(available()) if presets is None else list(presets)
    models = _load_models(presets, list(runs or []))
    if not models:
        from tfface.errors import ConfigError

        raise ConfigError("bench recognizers: no presets shipped and no --run given")
    t0 = time.perf_counter()
    _say(f"rendering the held-out sets ({cfg.test_identities} identities x {cfg.test_images}, "
         f"{max(cfg.distractors)} distractors, the sweep and the sketches)")
    sets = held_out_sets(cfg)
    render_s = time.perf_counter() - t0
    result: dict = {"benchmark": "recognizers", "small": small, "config": dataclasses.asdict(cfg),
                    "render_seconds": round(render_s, 1), "models": {}}
    from tqdm.auto import tqdm

    for name, emb in tqdm(models.items(), desc="bench recognizers", unit="model", file=sys.stderr):
        t = time.perf_counter()
        m = evaluate_recognizer(emb, sets, cfg)
        if data:
            m["real_faces"] = real_faces(emb, data)
        m["seconds"] = round(time.perf_counter() - t, 1)
        m["dim"] = emb.dim
        if name in presets:
            rec = info(name)
            m["preset"] = {"recipe": rec["recipe"].get("name"), "dtype": rec["dtype"],
                           "weights_bytes": rec["weights_bytes"], "parameters": rec["parameters"],
                           "train_seconds": rec.get("train_seconds")}
        result["models"][name] = m
        _say(f"{name}: rank-1 " + ", ".join(f"{k} distractors {v:.3f}" for k, v in m["rank1"].items())
             + "; TAR " + ", ".join(f"@{k} {v}" for k, v in m["tar_at_far"].items()))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def to_markdown(result: dict) -> str:
    """The docs' tables from a ``tfface bench recognizers`` JSON."""
    models = result["models"]
    dists = result["config"]["distractors"]
    fars = [f"{x:g}" for x in result["config"]["far_targets"]]
    head = ("| model | " + " | ".join(f"rank-1, {n} distractors" for n in dists) + " | "
            + " | ".join(f"TAR@FAR={x}" for x in fars) + " | 10-fold accuracy | weights |")
    lines = [head, "|" + "---|" * (len(dists) + len(fars) + 3)]
    for name, m in models.items():
        w = m.get("preset", {})
        size = f"{w['weights_bytes'] / 1e6:.1f} MB {w['dtype']}" if w else "float32 run"
        lines.append(f"| {name} | " + " | ".join(_f(m["rank1"][str(n)]) for n in dists) + " | "
                     + " | ".join(_f(m["tar_at_far"].get(x)) for x in fars)
                     + f" | {_f(m['verification_10fold']['accuracy'])} | {size} |")
    lines += ["", f"Nuisance sweep: rank-1 of probes per bin against the photo gallery with {min(dists)} distractors.",
              ""]
    for factor in ("yaw", "resolution_factor", "blur", "expression", "style"):
        bins = list(next(iter(models.values()))["sweep"][factor])
        lines += [f"| {factor} | " + " | ".join(bins) + " |", "|" + "---|" * (len(bins) + 1)]
        for name, m in models.items():
            lines.append(f"| {name} | " + " | ".join(_f(m["sweep"][factor].get(b, {}).get("rank1")) for b in bins)
                         + " |")
        lines.append("")
    real = {n: m["real_faces"] for n, m in models.items() if "real_faces" in m}
    if real:
        lines += ["| model | ORL leave-one-out rank-1 | with CUFS distractors |", "|---|---|---|"]
        for n, r in real.items():
            lines.append(f"| {n} | {_f(r.get('leave_one_out_rank1'))} | "
                         f"{_f(r.get('leave_one_out_rank1_with_distractors'))} |")
    from tfface.experiments.machine import provenance_line

    lines += ["", provenance_line(result)]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m tfface.experiments.bench_recognizers RESULT.json -> markdown tables
    import json

    print(to_markdown(json.loads(Path(sys.argv[1]).read_text())))
