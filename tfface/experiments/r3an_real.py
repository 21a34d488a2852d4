#!/usr/bin/env python
"""R3AN on real models and real faces: old = dlib's ResNet descriptor, new = the MobileFaceNet ONNX model.

Usage::

    python tfface/experiments/r3an_real.py --orl /path/to/orl-att-faces/orl_faces \
        --cufs /path/to/cuhk-cufs-student-64px/photo_A64 --out runs/r3an_real

or set ``TFFACE_DATA_DIR`` (the folder holding ``orl-att-faces/``, ``cuhk-cufs-student-64px/`` and
``mobilefacenet-foamliu-onnx/``) and pass nothing. A missing ORL folder or ONNX model, or a missing
``real`` extra, prints ``skipped: ...`` and exits 0. The data are research-only: nothing derived from
them leaves ``--out`` (keep it out of the repository; ``runs/`` is not committed).

What it does (docs/methods/r3an-real-data.md has the choices and a measured table):

- data: ORL (40 identities x 10 grey 92x112 images, as RGB). Identities s1-s20 train, s21-s40 test.
  CUFS-student photos (188 identities x 1 colour 64x64 photo), when given, are split by alternating
  file name: the even-indexed half joins the training triplets (one image per identity gives no
  identity signal, but still a (face, old feature, new feature) triplet), the odd-indexed half are
  distractors of the per-pair top-1 (in both models' spaces);
- old = dlib (HOG detection, falling back to the whole image when nothing is found; 5-point chip;
  128-D); new = MobileFaceNet on faces aligned to ARCFACE_112 with dlib-derived 5 points (128-D). The
  56x56 faces R3AN reconstructs are those aligned crops, downsized. Embeddings are cached in ``--out``;
- translators: linear (ridge least squares, closed form), FC (MLP with G+E's parameter count, L_Reg
  only), R3AN (all four losses) and Arch3 (Reg only through G and E), each with ``--seeds``
  (the linear map is deterministic: one fit). Budget for ~300 triplets: Adam (beta1 0.5),
  lr 1e-3 (decayed x0.1 at 30/50/70% of the batches), width 0.5, batch 32, ``--epochs`` 40,
  feature loss ``sqdist``;
- metrics on the test identities: probe-transform rank-1 (probes = the 9 later images of each test
  identity, translated; gallery = the first image's MobileFaceNet feature), the same with raw
  (untranslated) dlib probes, each model's own rank-1 on that split, the per-pair top-1 (MegaFace
  protocol, probe and gallery transformation) with the CUFS distractors, and the mean cosine between
  translated and true new features.

Writes ``<out>/results.json`` (atomically) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from tfface.experiments.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ORL_SUB = Path("orl-att-faces/orl_faces")
CUFS_SUB = Path("cuhk-cufs-student-64px/photo_A64")
MFN_SUB = Path("mobilefacenet-foamliu-onnx/MobileFaceNet.onnx")
TRAIN_SUBJECTS = range(1, 21)
VARIANTS = ("linear", "fc", "r3an", "arch3")
CACHE_VERSION = 1


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orl", help="ORL folder with s1..s40 (default: $TFFACE_DATA_DIR/orl-att-faces/orl_faces)")
    p.add_argument("--cufs", help="CUFS photo folder (default: $TFFACE_DATA_DIR/cuhk-cufs-student-64px/photo_A64; "
                                  "'none' to leave CUFS out)")
    p.add_argument("--mobilefacenet", help="MobileFaceNet.onnx (default: under $TFFACE_DATA_DIR, or beside ORL's "
                                           "data folder)")
    p.add_argument("--out", default="runs/r3an_real", help="output folder (embedding cache, results.json)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--renders", help="a rendered-triplets folder of the same two models (tfface train "
                                      "translator_dlib_mobilefacenet writes <out>/triplets/train): train on the real "
                                      "pairs, on the renders and on both")
    p.add_argument("--real-weight", type=int, default=1, help="with --renders: each real pair counts this many "
                                                                 "times in the 'both' training set")
    p.add_argument("--ridge", default="cv", help="ridge of the linear baseline: a number, or cv (identity-grouped "
                                                 "cross-validation, tfface.methods.r3an.select_ridge)")
    return p.parse_args(argv)


def skip(message: str) -> None:
    print(f"skipped: {message}")
    sys.exit(0)


def resolve_paths(args) -> tuple[Path, Path | None, Path]:
    env = os.environ.get("TFFACE_DATA_DIR")
    data_dir = Path(env) if env else None
    if args.orl:
        orl = Path(args.orl)
    elif data_dir is not None:
        orl = data_dir / ORL_SUB
    else:
        skip("ORL data not given (set --orl or TFFACE_DATA_DIR)")
    if not orl.is_dir():
        skip(f"ORL data {orl} not found (set --orl or TFFACE_DATA_DIR)")
    guess_root = data_dir if data_dir is not None else orl.resolve().parents[1]
    if args.cufs and args.cufs.lower() == "none":
        cufs = None
    else:
        cufs = Path(args.cufs) if args.cufs else guess_root / CUFS_SUB
        if not cufs.is_dir():
            if args.cufs:
                skip(f"CUFS photos {cufs} not found (set --cufs, or --cufs none)")
            print(f"note: no CUFS photos at {cufs}; running on ORL alone, without distractors")
            cufs = None
    mfn = Path(args.mobilefacenet) if args.mobilefacenet else guess_root / MFN_SUB
    if not mfn.is_file():
        skip(f"MobileFaceNet model {mfn} not found (set --mobilefacenet or TFFACE_DATA_DIR)")
    return orl, cufs, mfn


# ----------------------------------------------------------------------------------------------- embeddings
def embed_set(name: str, images: list[np.ndarray], paths: list[str], mfn_path: Path, out: Path) -> dict:
    """dlib + aligned MobileFaceNet features and the 56x56 aligned faces, cached in ``out``."""
    from tfface.atomic import atomic_path
    from tfface.data.alignment import align_face
    from tfface.embed.dlib_face import DlibFace, dlib_embedder
    from tfface.embed.embedder import Embedder
    from tfface.methods.r3an.data import resize_faces

    cache = out / f"embeddings_{name}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as d:
            if int(d["version"]) == CACHE_VERSION and list(d["paths"]) == list(paths):
                print(f"{name}: cached embeddings {cache}")
                return {k: d[k] for k in d.files}
    t0 = time.perf_counter()
    old = dlib_embedder()
    face: DlibFace = old._resource  # the embedder's backend: one detection serves both models
    source, points, detected = zip(*(face.analyse(im) for im in images), strict=True)
    source = np.stack(source)
    source /= np.maximum(np.linalg.norm(source, axis=1, keepdims=True), 1e-12)  # as old.embed(...) returns
    aligned = np.stack([align_face(im, pts, "arcface112") for im, pts in zip(images, points, strict=True)])
    target = Embedder.from_onnx(mfn_path, "mobilefacenet_onnx").embed(aligned)
    result = {"source": source.astype(np.float32), "target": target, "faces": resize_faces(aligned),
              "paths": np.asarray(paths), "version": np.asarray(CACHE_VERSION),
              "detected": np.asarray(detected, bool), "seconds": np.asarray(time.perf_counter() - t0)}
    with atomic_path(cache, suffix=".npz") as tmp:
        np.savez(tmp, **result)
    print(f"{name}: embedded {len(images)} images in {float(result['seconds']):.0f} s (dlib face detected in "
          f"{int(result['detected'].sum())}, whole-image box for {int((~result['detected']).sum())})")
    return result


def load_data(orl: Path, cufs: Path | None, mfn: Path, out: Path):
    from tfface.data.image_folder import ImageFolder, load_image

    folder = ImageFolder(orl)
    images, labels = folder.load(progress=False)
    try:
        subject = np.array([int(folder.class_names[i].lstrip("s")) for i in labels])
    except ValueError:
        raise SystemExit(f"error: {orl} does not look like ORL (identity folders s1..s40)") from None
    orl_set = embed_set("orl", list(images), [str(p) for p in folder.paths], mfn, out)
    orl_set["subject"] = subject
    cufs_set = None
    if cufs is not None:
        files = sorted(f for f in cufs.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if files:
            cufs_set = embed_set("cufs", [load_image(f) for f in files], [str(f) for f in files], mfn, out)
    return orl_set, cufs_set


# ------------------------------------------------------------------------------------------------ evaluation
def rank1(probe, probe_labels, gallery, gallery_labels) -> float:
    from tfface.eval.identification import identify

    return identify(probe, probe_labels, gallery, gallery_labels, ranks=(1,)).rank_accuracy[1]


def first_image_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the first image of each identity (gallery) and of the others (probes)."""
    first = np.array([np.flatnonzero(labels == c)[0] for c in np.unique(labels)])
    rest = np.setdiff1d(np.arange(len(labels)), first)
    return first, rest


def evaluate(translate, test: dict, distractors: dict | None) -> dict:
    from tfface.methods.r3an.evaluation import evaluate_translator

    lab = test["labels"]
    g, p = first_image_split(lab)
    t = np.asarray(translate(test["source"]), np.float32)
    res = {"rank1": rank1(t[p], lab[p], test["target"][g], lab[g])}
    if distractors is not None:
        res.update(evaluate_translator(translate, test["source"], test["target"], lab,
                                       distractors["source"], distractors["target"]))
    else:
        res["mean_cosine"] = float(np.mean(np.sum(t / np.linalg.norm(t, axis=1, keepdims=True)
                                                  * test["target"], axis=1)))
    return res


def keras_translate(model):
    def fn(x: np.ndarray) -> np.ndarray:
        return np.asarray(model(np.asarray(x, np.float32), training=False))

    return fn


# ------------------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    args = parse_args(argv)
    orl, cufs, mfn = resolve_paths(args)
    try:
        from tfface.embed.dlib_face import require_dlib

        require_dlib()
    except Exception as e:  # ConfigError naming the extra
        skip(str(e))

    from tfface.atomic import atomic_path
    from tfface.methods.r3an import R3ANConfig
    from tfface.methods.r3an.data import PairedFeatures
    from tfface.training.r3an import train_translator

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    orl_set, cufs_set = load_data(orl, cufs, mfn, out)

    train_mask = np.isin(orl_set["subject"], list(TRAIN_SUBJECTS))
    test = {k: orl_set[k][~train_mask] for k in ("source", "target")}
    test["labels"] = orl_set["subject"][~train_mask]
    parts = [{k: orl_set[k][train_mask] for k in ("source", "target", "faces")}]
    parts[0]["labels"] = orl_set["subject"][train_mask]
    distractors = None
    n_cufs_train = 0
    if cufs_set is not None:
        idx = np.arange(len(cufs_set["source"]))
        tr, di = idx[idx % 2 == 0], idx[idx % 2 == 1]
        n_cufs_train = len(tr)
        parts.append({k: cufs_set[k][tr] for k in ("source", "target", "faces")})
        parts[-1]["labels"] = 1000 + tr  # one identity per photo, disjoint from ORL's
        distractors = {k: cufs_set[k][di] for k in ("source", "target")}
    pairs = PairedFeatures(*(np.concatenate([q[k] for q in parts]) for k in ("faces", "source", "target", "labels")))
    print(f"train: {len(pairs)} triplets ({int(train_mask.sum())} ORL s1-s20 + {n_cufs_train} CUFS photos); "
          f"test: {len(test['labels'])} ORL images of s21-s40; "
          f"distractors: {0 if distractors is None else len(distractors['source'])} CUFS photos")

    # the untranslated references, on the same split
    lab = test["labels"]
    g, p = first_image_split(lab)
    reference = {
        "old_own_rank1": rank1(test["source"][p], lab[p], test["source"][g], lab[g]),
        "new_own_rank1": rank1(test["target"][p], lab[p], test["target"][g], lab[g]),
        "raw_cross_rank1": rank1(test["source"][p], lab[p], test["target"][g], lab[g]),
    }
    if distractors is not None:
        from tfface.methods.r3an.evaluation import cross_top1

        reference["raw_cross_pair_top1"] = cross_top1(test["source"], test["target"], lab, distractors["target"])
        reference["new_own_pair_top1"] = cross_top1(test["target"], test["target"], lab, distractors["target"])
    print("reference:", json.dumps({k: round(v, 4) for k, v in reference.items()}))

    trainings = {"real": pairs}
    if args.renders:
        from tfface.translation.triplets import load_triplets

        renders, manifest = load_triplets(args.renders)
        if (manifest["old"]["name"], manifest["new"]["name"]) != ("dlib:resnet_v1:chip", "onnx:MobileFaceNet.onnx"):
            raise SystemExit(f"error: {args.renders} holds triplets of {manifest['old']['name']} -> "
                             f"{manifest['new']['name']}, not dlib -> MobileFaceNet")
        renders = PairedFeatures(renders.faces, renders.source, renders.target, renders.labels + 10_000_000)
        trainings["renders"] = renders
        both = "both" if args.real_weight == 1 else f"both, real x{args.real_weight}"
        trainings[both] = PairedFeatures(*(np.concatenate([np.repeat(getattr(pairs, k), args.real_weight, axis=0),
                                                           getattr(renders, k)])
                                           for k in ("faces", "source", "target", "labels")))
        print(f"renders: {len(renders)} rendered triplets from {args.renders}")
    runs: list[dict] = []
    for (training, pairs), variant in ((t, v) for t in trainings.items() for v in args.variants):
        seeds = [0] if variant == "linear" else args.seeds
        for seed in seeds:
            if variant == "linear":
                res = train_translator("linear", pairs, epochs=1,
                                       ridge=args.ridge if args.ridge == "cv" else float(args.ridge))
            else:
                cfg = R3ANConfig(variant=variant, source_dim=pairs.source_dim, target_dim=pairs.target_dim,
                                 optimizer="adam", learning_rate=args.learning_rate, width=args.width,
                                 feature_loss="sqdist", seed=seed)
                res = train_translator(cfg, pairs, epochs=args.epochs, batch_size=args.batch_size)
            metrics = evaluate(keras_translate(res.translator), test, distractors)
            final = {k: v[-1] for k, v in res.history.items()}
            label = variant if len(trainings) == 1 else f"{variant} [{training}]"
            runs.append({"variant": label, "training": training, "triplets": len(pairs), "seed": seed,
                         "seconds": round(res.seconds, 1),
                         "parameters": res.parameters, "final_losses": final, **metrics})
            print(f"{label} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                  + f" ({res.seconds:.0f} s)")

    summary = summarise(runs)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "data": {"orl": str(orl), "cufs": None if cufs is None else str(cufs), "mobilefacenet": str(mfn)},
        "split": {"train_triplets": {t: len(q) for t, q in trainings.items()}, "train_orl_subjects": "s1-s20", "train_cufs_photos": n_cufs_train,
                  "test_subjects": "s21-s40", "test_images": int(len(lab)), "gallery": "first image per identity",
                  "probes": int(len(p)),
                  "distractors": 0 if distractors is None else int(len(distractors["source"]))},
        "config": {"epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "adam",
                   "learning_rate": args.learning_rate, "width": args.width, "feature_loss": "sqdist",
                   "ridge": args.ridge, "seeds": args.seeds},
        "embedding": {f"{name}_{key}": int(fn(d["detected"]).sum())
                      for name, d in (("orl", orl_set), ("cufs", cufs_set)) if d is not None
                      for key, fn in (("detected_faces", np.asarray), ("whole_image_boxes", np.logical_not))},
        "machine": machine_info(),
        "reference": reference,
        "runs": runs,
        "summary": summary,
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    print()
    print(markdown_table(reference, summary, distractors is not None))
    print(f"\nwrote {out / 'results.json'} ({result['total_seconds']:.0f} s)")
    return 0


def summarise(runs: list[dict]) -> dict:
    out: dict = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        rs = [r for r in runs if r["variant"] == variant]
        keys = [k for k in ("rank1", "probe_transform_top1", "gallery_transform_top1", "mean_cosine") if k in rs[0]]
        out[variant] = {k: {"mean": float(np.mean([r[k] for r in rs])), "std": float(np.std([r[k] for r in rs])),
                            "runs": len(rs)} for k in keys}
        out[variant]["seconds_per_run"] = float(np.mean([r["seconds"] for r in rs]))
    return out


def markdown_table(reference: dict, summary: dict, with_distractors: bool) -> str:
    def cell(s: dict, key: str) -> str:
        if key not in s:
            return "-"
        v = s[key]
        return f"{v['mean']:.3f}" if v["runs"] == 1 else f"{v['mean']:.3f} ± {v['std']:.3f}"

    cols = ["rank-1 (dlib->MFN, gallery MFN)"]
    if with_distractors:
        cols += ["per-pair top-1, probe transf.", "per-pair top-1, gallery transf."]
    cols += ["mean cos(T(x), y)", "runs", "s / run"]
    lines = ["| translator | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    raw = [f"{reference['raw_cross_rank1']:.3f}"]
    if with_distractors:
        raw += [f"{reference['raw_cross_pair_top1']:.3f}", "-"]
    lines.append("| none (raw dlib probes) | " + " | ".join(raw + ["-", "-", "-"]) + " |")
    names = {"linear": "linear (ridge LS)", "fc": "FC", "r3an": "R3AN", "arch3": "Arch3 (Reg only)"}
    for variant, s in summary.items():
        base, _, training = variant.partition(" [")
        variant = names.get(base, base) + (f" [{training}" if training else "")
        row = [cell(s, "rank1")]
        if with_distractors:
            row += [cell(s, "probe_transform_top1"), cell(s, "gallery_transform_top1")]
        row += [cell(s, "mean_cosine"), str(s["rank1"]["runs"]), f"{s['seconds_per_run']:.0f}"]
        lines.append(f"| {variant} | " + " | ".join(row) + " |")
    own = [f"{reference['new_own_rank1']:.3f}"]
    if with_distractors:
        own += [f"{reference['new_own_pair_top1']:.3f}", "-"]
    lines.append("| upper bound: MFN probes (no translation needed) | " + " | ".join(own + ["1", "-", "-"]) + " |")
    lines.append(f"\nOwn rank-1 on the same split: dlib {reference['old_own_rank1']:.3f}, "
                 f"MobileFaceNet {reference['new_own_rank1']:.3f}.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
