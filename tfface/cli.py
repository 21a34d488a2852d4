"""The ``tfface`` command line: demo, render, train, eval, extract, export, translate, upgrade-gallery, bench.

Heavy modules (TensorFlow) are imported inside each command, so ``tfface --help`` is instant.
Bad input exits with status 2 and one line naming the file, field or shape at fault.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tfface import __version__
from tfface.errors import TffaceError


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def cmd_demo(a) -> None:
    from tfface.experiments.demo import run_demo

    report = run_demo(a.out, quick=a.quick, workers=a.workers, small_recipe=a.small, large_recipe=a.large,
                      from_scratch=a.from_scratch)
    print(f"report: {report}")


def cmd_render(a) -> None:
    from tfface.config import from_dict, load_yaml
    from tfface.data.builtin import render_dataset, save_dataset
    from tfface.data.preview import save_grid
    from tfface.data.synthetic import FaceDataConfig

    cfg = from_dict(FaceDataConfig, load_yaml(a.config)) if a.config else FaceDataConfig()
    overrides = {k: v for k, v in (("num_identities", a.identities), ("images_per_identity", a.images),
                                   ("image_size", a.size), ("seed", a.seed)) if v is not None}
    cfg = cfg.replace(**overrides)
    data = render_dataset(cfg, workers=a.workers, use_cache=not a.out)
    if a.out:
        save_dataset(data, a.out)
        print(f"wrote {len(data)} images to {a.out}")
    if a.preview:
        save_grid(data, a.preview)
        print(f"preview: {a.preview}")


def cmd_train(a) -> None:
    from tfface.experiments.recipes import load_experiment

    overrides = list(a.set or [])
    if a.profile_batch is not None:
        overrides.append(f"train.profile_batch={a.profile_batch}")
    method, recipe, path = load_experiment(a.recipe, overrides=overrides, epochs=a.epochs, check=True)
    print(f"training {method.name} recipe {recipe.name!r} from {path}", file=sys.stderr)
    summary = method.run(recipe, out_dir=a.out)
    print(json.dumps(summary, indent=2, default=str)[:20000])


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _eval_table(report: dict) -> list[str]:
    """The headline numbers of an evaluation report as a short text table."""
    lines = []
    ver = report.get("verification")
    if ver:
        lines.append(f"verification ({ver['num_positive']} genuine / {ver['num_negative']} impostor pairs, "
                     f"{ver['n_folds']}-fold)")
        lines.append(f"  {'accuracy':<16} {_fmt(ver['accuracy'])} +- {ver['accuracy_std']:.4f}")
        lines.append(f"  {'AUC':<16} {_fmt(ver['auc'])}")
        lines.append(f"  {'EER':<16} {_fmt(ver['eer'])}")
        for far, tar in ver["tar_at_far"].items():
            lines.append(f"  {'TAR@FAR=' + far:<16} {_fmt(tar)}")
    rows = [("without distractors", report.get("identification_no_distractors")),
            (None, report.get("identification"))]
    rows = [(name, r) for name, r in rows if r]
    if len(rows) == 2 and not rows[1][1]["num_distractors"]:
        rows = rows[:1]  # no distractors given: the two results are the same
    if rows:
        first = rows[0][1]
        lines.append(f"identification ({first['num_searches']} searches, gallery {first['gallery_size']})")
        lines.append(f"  {'':<38} rank-1  rank-5")
        for name, r in rows:
            label = name or (f"with {r['num_distractors']} distractors" if r["num_distractors"]
                             else "no distractors given")
            ranks = r["rank_accuracy"]
            lines.append(f"  {label:<38} {_fmt(ranks.get('1'))}  {_fmt(ranks.get('5'))}")
    return lines


def cmd_eval(a) -> None:
    from tfface.eval.evaluate import evaluate_feature_files

    report = evaluate_feature_files(a.probe, gallery=a.gallery, distractors=a.distractors, out_dir=a.out)
    print("\n".join(_eval_table(report)))
    print(f"full report: {Path(a.out) / 'report.json'} (plots beside it)")


def cmd_extract(a) -> None:
    from tfface.data.sources import load_faces
    from tfface.embed import Embedder, extract_features, get_preprocessing

    get_preprocessing(a.preprocessing)  # an unknown name fails before any work
    emb = Embedder.load(a.model, a.preprocessing)
    faces = load_faces(a.data, size=None)
    # images of another size than the model's are aligned with their landmarks (rendered sets), or
    # resized with a warning; a progress bar over batches goes to stderr
    extract_features(emb, faces.images, faces.labels, a.output, paths=faces.paths,
                     landmarks5=faces.landmarks5, progress=True)
    print(f"wrote {len(faces.labels)} features of dimension {emb.dim} to {a.output}")


def cmd_export(a) -> None:
    from tfface.export.commands import run_export
    from tfface.presets import load_model, preset_name

    name = preset_name(a.path) if a.action == "model" else None  # tfface export model preset:NAME
    run_export(a, model=None if name is None else load_model(name))


def cmd_translate(a) -> None:
    from tfface.translation.translate import translate_features

    r = translate_features(a.translator, a.input, a.out, batch_size=a.batch_size, progress=not a.no_progress,
                           normalize=not a.no_normalize)
    print(f"translated {r.count} features {r.source_dim} -> {r.target_dim} with {r.translator} "
          f"in {r.seconds:.1f} s -> {r.path}")


def cmd_upgrade_gallery(a) -> None:
    from tfface.retrieval.commands import parse_overrides
    from tfface.translation.upgrade import upgrade_gallery

    info = upgrade_gallery(a.translator, a.index, a.out, backend=a.backend, config=parse_overrides(a.set),
                           batch_size=a.batch_size, overwrite=a.overwrite, progress=not a.no_progress,
                           lock_timeout=a.lock_timeout)
    print(json.dumps(info, indent=2))


def recorded_command(argv: list[str]) -> str:
    """The command as a result records it: a real-data folder is the user's own path, so it reads ``DIR``."""
    out, hide = [], False
    for tok in argv:
        if hide:
            out.append("DIR")
            hide = False
        elif tok == "--data":
            out.append(tok)
            hide = True
        elif tok.startswith("--data="):
            out.append("--data=DIR")
        else:
            out.append(tok)
    return "tfface " + " ".join(out)


def cmd_bench(a) -> None:
    from tfface.atomic import atomic_path
    from tfface.experiments.machine import machine_info

    if a.what == "data":
        from tfface.experiments.bench_data import bench_data

        result = bench_data(workers=a.workers)
    elif a.what == "retrieval":
        from tfface.experiments.bench_retrieval import bench_retrieval

        result = bench_retrieval(small=a.small)
    elif a.what == "r3an":
        from tfface.experiments.r3an import bench_r3an

        result = bench_r3an(small=a.small, seeds=a.seeds, parts=a.parts)
    elif a.what == "ddl":
        from tfface.experiments.ddl import bench_ddl

        result = bench_ddl(small=a.small, seeds=a.seeds, data_dir=a.data)
    elif a.what == "wsgan":
        from tfface.experiments.wsgan import bench_wsgan

        result = bench_wsgan(seeds=a.seeds, small=a.small, preset=(a.preset or ["cpu"])[-1])
        markdown = result.pop("markdown")
    elif a.what == "ftl":
        from tfface.experiments.ftl import bench_ftl

        result = bench_ftl(seeds=a.seeds, small=a.small)
        markdown = result.pop("markdown")
    elif a.what == "recognizers":
        from tfface.experiments.bench_recognizers import bench_recognizers

        result = bench_recognizers(small=a.small, presets=a.preset, runs=a.run, data=a.data)
    else:
        raise TffaceError(f"unknown benchmark {a.what!r}; known: data, retrieval, r3an, ddl, wsgan, ftl, recognizers")
    result.setdefault("command", recorded_command(sys.argv[1:]) if sys.argv[1:2] == ["bench"]
                      else f"tfface bench {a.what}")
    result["machine"] = machine_info()
    out = Path(a.out or f"runs/bench/{a.what}.json")
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    if a.what == "recognizers":
        from tfface.experiments.bench_recognizers import to_markdown

        print(to_markdown(result))
    elif a.what in ("wsgan", "ftl"):
        with atomic_path(out.with_suffix(".md")) as tmp:
            tmp.write_text(markdown + "\n")
        print(markdown)
    else:
        print(json.dumps(result, indent=2))
    print(f"wrote {out}")


def cmd_preset(a) -> None:
    from tfface import presets

    if a.action in ("info", "pack") and not a.name:
        raise TffaceError(f"preset {a.action}: give the preset's name, e.g. tfface preset {a.action} builtin-new")
    if a.action == "pack" and not a.run:
        raise TffaceError("preset pack: give --run DIR, a finished recognizer run (embedder.keras + history.json)")
    if a.action == "list":
        for name in presets.available(a.folder):
            r = presets.info(name, a.folder)
            m = r.get("metrics", {}).get("rank1", {})
            print(f"{name}: {r['recipe'].get('name')} ({r['recipe']['model']['backbone']}, {r['dtype']}, "
                  f"{r['weights_bytes'] / 1e6:.1f} MB, input {r['preprocessing']}, {r['embedding_dim']}-D)"
                  + ("; rank-1 " + ", ".join(f"{v:.3f} with {k} distractors" for k, v in m.items()) if m else ""))
        return
    if a.action == "info":
        print(json.dumps({k: v for k, v in presets.info(a.name, a.folder).items() if k != "variables"}, indent=2))
        return
    metrics = None
    if a.metrics:
        bench = json.loads(Path(a.metrics).read_text())
        try:
            metrics = bench["models"][a.metrics_model or a.name]
        except KeyError as e:
            raise TffaceError(f"{a.metrics}: no models.{a.metrics_model or a.name} in this bench JSON") from e
        metrics = {**metrics, "bench_command": bench.get("command"), "bench_machine": bench.get("machine")}
    from tfface.experiments.machine import machine_info

    r = presets.pack(a.run, a.name, a.folder, dtype=a.dtype, metrics=metrics, machine=machine_info())
    print(f"wrote preset {a.name} ({r['weights_bytes'] / 1e6:.2f} MB {r['dtype']}) to {a.folder or presets.PRESET_DIR}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tfface", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"tfface {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="render faces, load (or train) an old and a new recognizer, evaluate, "
                                    "translate, report")
    s.add_argument("--out", default="runs/demo")
    s.add_argument("--quick", action="store_true", help="a tiny run for smoke tests (minutes less)")
    s.add_argument("--workers", type=int, default=None, help="rendering processes")
    s.add_argument("--small", help="recipe of the old (small) recognizer (default recipes/recognizer_small.yaml)")
    s.add_argument("--large", help="recipe of the new (large) recognizer (default recipes/recognizer_large.yaml)")
    s.add_argument("--from-scratch", action="store_true",
                   help="train the old and new recognizers from the recipes instead of loading the shipped presets")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("render", help="render built-in faces (cached) and optionally a preview grid")
    s.add_argument("--config", help="YAML with FaceDataConfig fields")
    s.add_argument("--identities", type=int)
    s.add_argument("--images", type=int)
    s.add_argument("--size", type=int)
    s.add_argument("--seed", type=int)
    s.add_argument("--workers", type=int, default=None)
    s.add_argument("-o", "--out", help="write the set to this .npz instead of the cache")
    s.add_argument("--preview", help="write a PNG grid of the first identities")
    s.set_defaults(func=cmd_render)

    s = sub.add_parser("train", help="train any method from its recipe YAML (the recipe's method: key)")
    s.add_argument("recipe", help="a recipe YAML, or the name of a packaged one (e.g. recognizer_small, "
                                  "r3an_builtin, ddl_resolution)")
    s.add_argument("--out", help="output folder (default: the recipe's output_dir, runs/<name>)")
    s.add_argument("--epochs", type=int, help="override the recipe's train.epochs (the schedule and the record "
                                              "follow)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any recipe field, e.g. --set train.learning_rate=0.05 (repeatable; YAML values)")
    s.add_argument("--profile-batch", type=int, help="write a profiler trace of this batch to TensorBoard "
                                                     "(recognizer recipes)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("eval", help="verification and identification from feature files")
    s.add_argument("--probe", required=True, help="features .npz of the labelled test set")
    s.add_argument("--gallery", help="features .npz of the gallery (default: first image of each identity)")
    s.add_argument("--distractors", help="features .npz of distractors")
    s.add_argument("--out", default="runs/eval", help="folder for report.json (the full results) and the plots")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("extract", help="extract features of a dataset with any embedder")
    s.add_argument("--model", required=True, help=".keras, SavedModel dir, .onnx or .tflite")
    s.add_argument("--data", required=True, help="image folder per identity, .rec, TFRecord or rendered .npz")
    s.add_argument("--preprocessing", default="arcface112")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=cmd_extract)

    s = sub.add_parser("export", help="export a trained embedder: SavedModel (TF Serving) and ONNX; check one")
    s.add_argument("action", choices=["model", "check"])
    s.add_argument("path", help="model (.keras or preset:NAME) to export, or a SavedModel version dir to check")
    s.add_argument("--out", default="runs/export", help="TF Serving base folder")
    s.add_argument("--name", default="embedder")
    s.add_argument("--version", type=int, default=1)
    s.add_argument("--onnx", action="store_true", help="also write <out>/<name>.onnx")
    s.add_argument("--input-name", default="images")
    s.add_argument("--output-name", default="embeddings")
    s.add_argument("--overwrite", action="store_true", help="replace an existing version")
    s.add_argument("--signature", default="serving_default", help="check: the signature to inspect and run")
    s.add_argument("--expect-input", action="append", metavar="NAME[:SHAPE[:DTYPE]]",
                   help="check: an expected input, e.g. source_features:None,256:float32 (repeatable)")
    s.add_argument("--expect-output", action="append", metavar="NAME[:SHAPE[:DTYPE]]",
                   help="check: an expected output, e.g. target_features:None,512")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("translate", help="translate a feature file to a new model's space (streamed)")
    s.add_argument("--translator", required=True,
                   help="SavedModel dir (version or TF Serving base: highest version) or .keras file")
    s.add_argument("--in", dest="input", required=True, help="features .npz of the old model")
    s.add_argument("--out", required=True, help="features .npz to write (same labels/ids/paths)")
    s.add_argument("--batch-size", type=int, default=65536, help="rows per translated block")
    s.add_argument("--no-normalize", action="store_true", help="keep the translator's raw output")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_translate)

    s = sub.add_parser("upgrade-gallery", help="translate an index's stored vectors and build a new index")
    s.add_argument("--translator", required=True, help="SavedModel dir or .keras file")
    s.add_argument("--index", required=True, help="old index directory")
    s.add_argument("--out", required=True, help="new index directory")
    s.add_argument("--backend", choices=["scann", "exact"], help="default: the old index's")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="ScaNN override for the new index")
    s.add_argument("--batch-size", type=int, default=65536)
    s.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    s.add_argument("--lock-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for another writer of --out before giving up")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_upgrade_gallery)

    s = sub.add_parser("bench", help="benchmarks that write JSON")
    s.add_argument("what", choices=["data", "retrieval", "r3an", "ddl", "wsgan", "ftl", "recognizers"])
    s.add_argument("--out")
    s.add_argument("--workers", type=int, default=2, help="data: rendering processes")
    s.add_argument("--small", action="store_true", help="a quick, smaller run (smoke test, not for the docs)")
    s.add_argument("--seeds", type=int, default=3, help="r3an, ddl, wsgan, ftl: number of seeds")
    s.add_argument("--parts", default="all", help="r3an: reproduction, speed or all")
    s.add_argument("--data", help="ddl: optional real face image folder for the resolution variant; "
                                   "recognizers: a folder with orl-att-faces/ (and cuhk-cufs-student-64px/)")
    s.add_argument("--preset", action="append", help="recognizers: a preset to evaluate (default: all; repeatable); "
                                                     "wsgan: the WSGAN config preset (cpu, paper, gp; default cpu)")
    s.add_argument("--run", action="append", metavar="NAME=DIR",
                   help="recognizers: also evaluate a training run's float32 embedder.keras (repeatable)")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("preset", help="the shipped pretrained recognizers: list, info, pack a run into a preset")
    s.add_argument("action", choices=["list", "info", "pack"])
    s.add_argument("name", nargs="?", help="info, pack: the preset's name (e.g. builtin-new)")
    s.add_argument("--run", help="pack: a finished recognizer run folder (embedder.keras + history.json)")
    s.add_argument("--folder", help="where presets live (default: the package's tfface/presets/)")
    s.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    s.add_argument("--metrics", help="pack: a `tfface bench recognizers` JSON whose figures go into the record")
    s.add_argument("--metrics-model", help="pack: the model's name in that JSON (default: the preset's name)")
    s.set_defaults(func=cmd_preset)

    from tfface.retrieval.commands import add_index_parser

    add_index_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    _quiet_tf()
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except TffaceError as e:
        print(f"tfface {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a read-only folder, a full disk, a missing file: one line, no traceback
        where = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else e.filename
        what = e.strerror or str(e) or type(e).__name__
        line = f"{where}: {what}" if where is not None else what
        print(f"tfface {args.command}: error: {' '.join(line.split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
