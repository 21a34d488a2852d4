"""``make demo``: the main job on the built-in data, end to end.

1. Render the training identities, held-out test identities and distractor identities (cached).
2. Train the "old" small recognizer (MobileNetV2-style) and the "new" large one (iResNet-style)
   from ``recipes/recognizer_small.yaml`` and ``recipes/recognizer_large.yaml``.
3. Embed the test set and the distractors with both; evaluate verification, identification with
   distractors, similarity distributions, and the cross-model matrix (old vs new features).
4. Translate old features into the new space with R3AN and the FC and linear baselines
   (:mod:`tfface.experiments.demo_r3an`); export and check the translator.
5. WSGAN on the feature-level weak / strong world (:mod:`tfface.experiments.demo_wsgan`);
6. FTL on a long-tailed set of the built-in world (:mod:`tfface.experiments.demo_ftl`).
7. Write ``report.md`` with plots and ``report.json``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from tfface.atomic import atomic_path
from tfface.data.builtin import render_dataset
from tfface.data.preview import save_grid
from tfface.errors import ConfigError
from tfface.methods.recognizer.config import RecognizerRecipe, load_recipe

REPO_RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def quick_recipe(r: RecognizerRecipe) -> RecognizerRecipe:
    """A tiny variant for smoke tests: few identities, one epoch."""
    data = dataclasses.replace(r.data, builtin=r.data.builtin.replace(num_identities=12, images_per_identity=4))
    train = dataclasses.replace(r.train, epochs=1, batch_size=16, warmup_epochs=0.0)
    ev = dataclasses.replace(r.eval, identities=10, images_per_identity=3, distractors=20, pairs=20)
    return r.replace(data=data, train=train, eval=ev)


def load_demo_recipes(small: str | Path | None, large: str | Path | None) -> list[RecognizerRecipe]:
    paths = [Path(small) if small else REPO_RECIPES / "recognizer_small.yaml",
             Path(large) if large else REPO_RECIPES / "recognizer_large.yaml"]
    for p in paths:
        if not p.is_file():
            raise ConfigError(f"demo recipe not found: {p} (run from the repository, or pass --small/--large)")
    return [load_recipe(p) for p in paths]


def render_demo_sets(recipe: RecognizerRecipe, workers: int | None = None):
    """The demo's three built-in sets (cached): training identities, held-out test identities and
    one-image distractor identities, all from ``recipe.data.builtin`` and ``recipe.eval``."""
    cfg, ev = recipe.data.builtin, recipe.eval
    train = render_dataset(cfg, workers=workers)
    test = render_dataset(cfg.replace(num_identities=ev.identities, images_per_identity=ev.images_per_identity,
                                      identity_offset=ev.identity_offset), workers=workers)
    distract = render_dataset(cfg.replace(num_identities=ev.distractors, images_per_identity=1,
                                          identity_offset=ev.distractor_offset), workers=workers)
    return train, test, distract


#: The presets the demo uses by default, by role.
PRESETS = {"old": "builtin-old", "new": "builtin-new"}


def preset_result(name: str):
    """A shipped preset in the shape of a training result (recipe, embedder, history, seconds)."""
    from types import SimpleNamespace

    from tfface.presets import info, load_model, recipe

    rec = info(name)
    return SimpleNamespace(recipe=recipe(name), embedder=load_model(name), seconds=float(rec.get("train_seconds") or 0),
                           history={k: [v] for k, v in rec.get("final_epoch", {}).items()}, preset=name)


def run_demo(out: str | Path = "runs/demo", quick: bool = False, workers: int | None = None,
             small_recipe: str | Path | None = None, large_recipe: str | Path | None = None,
             from_scratch: bool = False) -> Path:
    from tfface.embed import Embedder
    from tfface.eval.cross_model import cross_model_matrix
    from tfface.eval.evaluate import evaluate_embeddings, gallery_split
    from tfface.eval.plots import plot_cmc, plot_roc, plot_similarity_histograms
    from tfface.eval.report import write_json
    from tfface.experiments.machine import describe, machine_info
    from tfface.presets import available
    from tfface.training.recognizer import train_recognizer

    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recipes = load_demo_recipes(small_recipe, large_recipe)
    if quick:
        recipes = [quick_recipe(r) for r in recipes]
    if recipes[0].data.builtin != recipes[1].data.builtin or recipes[0].eval != recipes[1].eval:
        raise ConfigError("the demo's two recipes must share data.builtin and eval, so both models see the same faces")
    timings: dict[str, float] = {}

    # 1. Data.
    t = time.perf_counter()
    cfg = recipes[0].data.builtin
    ev = recipes[0].eval
    _say(f"1/5 rendering {cfg.num_identities} training identities x {cfg.images_per_identity} images, "
         f"{ev.identities} test identities and {ev.distractors} distractors at {cfg.image_size}px")
    train, test, distract = render_demo_sets(recipes[0], workers)
    save_grid(train, out / "faces.jpg", rows=6, cols=8)
    timings["render"] = time.perf_counter() - t

    # 2. The old and new recognizers: the shipped presets, or trained from the recipes (--from-scratch).
    models = {}
    use_presets = (not from_scratch and not quick and small_recipe is None and large_recipe is None
                   and set(PRESETS.values()) <= set(available()))
    for role, r in zip(("old", "new"), recipes, strict=True):
        t = time.perf_counter()
        if use_presets:
            _say(f"2/5 loading the {role} recognizer: preset {PRESETS[role]} (tfface demo --from-scratch trains "
                 f"the recipes instead)")
            models[role] = preset_result(PRESETS[role])
        else:
            _say(f"2/5 training the {role} recognizer '{r.name}' ({r.model.backbone}, {r.train.epochs} epochs)")
            models[role] = train_recognizer(r, train.images, train.labels, out_dir=out / r.name, verbose=2)
        timings[f"train_{role}"] = time.perf_counter() - t

    # 3. Embed and evaluate.
    t = time.perf_counter()
    _say("3/5 embedding the test set and distractors, evaluating")
    feats, dfeats, evals = {}, {}, {}
    prep = f"tfface{cfg.image_size}"
    for role, res in models.items():
        emb = Embedder.from_keras(res.embedder, prep)
        feats[role] = emb.embed(test.images)
        dfeats[role] = emb.embed(distract.images)
        evals[role] = evaluate_embeddings(feats[role], test.labels, distractors=dfeats[role],
                                          n_pairs=ev.pairs, seed=ev.seed)
    g, p = gallery_split(test.labels)
    cross = cross_model_matrix({k: v[p] for k, v in feats.items()}, {k: v[g] for k, v in feats.items()},
                               test.labels[p], test.labels[g], distractors=dfeats, rank=1)
    from tfface.retrieval.search import identify_with_index

    indexed = {role: identify_with_index(feats[role][p], test.labels[p], feats[role][g], test.labels[g],
                                         distractors=dfeats[role]) for role in models}
    names = {role: f"{role}: {res.recipe.name}" for role, res in models.items()}
    plot_roc({names[k]: v.verification for k, v in evals.items()}, out / "roc.png")
    plot_cmc({names[k]: v.identification for k, v in evals.items()}, out / "cmc.png")
    plot_similarity_histograms({names[k]: v.distributions for k, v in evals.items()}, out / "similarity.png")
    timings["evaluate"] = time.perf_counter() - t

    # 4. Translate old -> new with R3AN and the baselines; export the translator.
    from tfface.experiments.demo_r3an import run_translation, translation_markdown

    t = time.perf_counter()
    translation = run_translation(train, test, distract, Embedder.from_keras(models["old"].embedder, prep),
                                  Embedder.from_keras(models["new"].embedder, prep), out, quick=quick)
    timings["translation"] = time.perf_counter() - t

    # 5. WSGAN on the feature-level weak / strong world.
    from tfface.experiments.demo_wsgan import run_wsgan_section, wsgan_markdown

    t = time.perf_counter()
    _say("WSGAN: weak-to-strong matching on the feature-level world")
    wsgan = run_wsgan_section(quick=quick)
    timings["wsgan"] = time.perf_counter() - t

    # 6. FTL on a long-tailed set of the built-in world.
    from tfface.experiments.demo_ftl import ftl_markdown, run_ftl_section

    t = time.perf_counter()
    _say("FTL: feature transfer to under-represented identities")
    ftl = run_ftl_section(quick=quick, progress=not quick)
    timings["ftl"] = time.perf_counter() - t

    # 7. Report.
    timings["total"] = time.perf_counter() - t_start
    machine = machine_info()
    report = {
        "machine": machine,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "data": {"train_identities": cfg.num_identities, "train_images": len(train),
                 "test_identities": ev.identities, "test_images": len(test), "distractors": len(distract),
                 "image_size": cfg.image_size, "quick": quick},
        "models": {role: {"recipe": res.recipe.name, "backbone": res.recipe.model.backbone,
                          "preset": getattr(res, "preset", None),
                          "parameters": int(res.embedder.count_params()), "train_seconds": round(res.seconds, 1),
                          "final": {k: v[-1] for k, v in res.history.items()}}
                   for role, res in models.items()},
        "evaluation": {role: e.to_dict() for role, e in evals.items()},
        "cross_model": cross.to_dict(),
        "retrieval_index": {role: r.to_dict() for role, r in indexed.items()},
        "translation": translation,
        "wsgan": wsgan,
        "ftl": ftl,
    }
    write_json(report, out / "report.json")
    md = _markdown(report, cross.to_markdown(), describe(machine), g, p, test.labels)
    md += "\n" + translation_markdown(translation, len(distract)) + "\n" + wsgan_markdown(wsgan)
    md += "\n" + ftl_markdown(ftl)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(md)
    _say(f"done in {timings['total']:.0f} s: {out / 'report.md'}")
    return out / "report.md"


def _markdown(r: dict, cross_md: str, machine: str, g, p, labels) -> str:
    ev = r["evaluation"]
    d = r["data"]
    gallery = len(g) + d["distractors"]
    chance = 1.0 / gallery
    lines = [
        "# tfface demo report", "",
        f"Machine: {machine}. Total time {r['timings_s']['total']:.0f} s "
        f"(render {r['timings_s']['render']:.0f} s, old {r['timings_s']['train_old']:.0f} s, "
        f"new {r['timings_s']['train_new']:.0f} s, evaluation {r['timings_s']['evaluate']:.0f} s, "
        f"translation {r['timings_s'].get('translation', 0):.0f} s).", "",
        f"Data: built-in 3DMM faces at {d['image_size']}px: {d['train_identities']} training identities "
        f"({d['train_images']} images); {d['test_identities']} held-out test identities ({d['test_images']} images, "
        f"first image of each enrolled, {len(p)} probes); {d['distractors']} distractor identities.", "",
        "![training faces](faces.jpg)", "",
        "## Recognizers", "",
        "| role | recipe | backbone | parameters | train time (s) | final loss | final accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for role, m in r["models"].items():
        f = m["final"]
        name = f"{m['recipe']} (preset {m['preset']})" if m.get("preset") else m["recipe"]
        lines.append(f"| {role} | {name} | {m['backbone']} | {m['parameters']:,} | {m['train_seconds']} | "
                     f"{f.get('loss', float('nan')):.3f} | {f.get('accuracy', float('nan')):.3f} |")
    lines += ["", "## Identification with distractors (closed set, MegaFace-style)", "",
              f"Gallery: {len(g)} enrolled identities + {d['distractors']} distractors; chance rank-1 = {chance:.4f}.", "",
              "| role | rank-1 | rank-5 | rank-10 | rank-1 without distractors |", "|---|---|---|---|---|"]
    for role, e in ev.items():
        ra = e["identification"]["rank_accuracy"]
        lines.append(f"| {role} | {ra['1']:.3f} | {ra['5']:.3f} | {ra['10']:.3f} | "
                     f"{e['identification_no_distractors']['rank_accuracy']['1']:.3f} |")
    old1 = ev["old"]["identification"]["rank_accuracy"]["1"]
    new1 = ev["new"]["identification"]["rank_accuracy"]["1"]
    verdict = "ahead of" if new1 > old1 else "NOT ahead of"
    lines += ["", "Through `tfface.retrieval.Index` (ScaNN, configuration chosen by gallery size) and, for checking, "
              "exactly over the same index:", "",
              "| role | ScaNN rank-1 | exact rank-1 | ranks agreeing | index size |", "|---|---|---|---|---|"]
    for role, ix in r["retrieval_index"].items():
        lines.append(f"| {role} | {ix['approximate']['rank_accuracy']['1']:.3f} | "
                     f"{ix['exact']['rank_accuracy']['1']:.3f} | {ix['rank_agreement']:.3f} | {ix['database_size']} |")
    lines += ["", f"The new (large) recognizer is **{verdict}** the old (small) one on rank-1 with distractors "
              f"({new1:.3f} vs {old1:.3f}; chance {chance:.4f}).", "", "![CMC](cmc.png)", "",
              "## Verification", "",
              "| role | 10-fold accuracy | AUC | EER | TAR@FAR=1e-2 | TAR@FAR=1e-3 |", "|---|---|---|---|---|---|"]
    for role, e in ev.items():
        v = e["verification"]
        tar = v["tar_at_far"]

        def fmt(x):
            return "n/a" if x is None else f"{x:.3f}"

        lines.append(f"| {role} | {v['accuracy']:.3f} ± {v['accuracy_std']:.3f} | {v['auc']:.3f} | {v['eer']:.3f} | "
                     f"{fmt(tar.get('0.01'))} | {fmt(tar.get('0.001'))} |")
    lines += ["", "![ROC](roc.png)", "", "## Similarity distributions", "",
              "| role | E[pos] - E[neg] (expectation margin) | histogram intersection (overlap) |", "|---|---|---|"]
    for role, e in ev.items():
        s = e["distributions"]
        lines.append(f"| {role} | {s['margin']:.3f} | {s['overlap']:.3f} |")
    lines += ["", "![similarities](similarity.png)", "",
              "## Cross-model compatibility (rank-1 with distractors)", "",
              "Query features of one model searched against a gallery of the other's: without translation the "
              "old and new feature spaces are incompatible (near chance); closing this gap is what R3AN's feature translator is for.", "",
              cross_md, ""]
    return "\n".join(lines)
