"""R3AN runs: ``tfface train recipes/r3an_builtin.yaml`` (and the baselines ``r3an_fc.yaml``, ``r3an_linear.yaml``).

:func:`run_recipe` runs a :class:`tfface.methods.r3an.config.R3ANRecipe`:

1. the triplets (56x56 face, old feature, new feature): with ``data.source: builtin``, the old and
   the new model (:func:`tfface.experiments.train_recognizer.embedder_for`: a ``.keras`` file, or a
   recognizer recipe trained first when its model is missing) embed the training identities of the
   old recipe's built-in world (cached as ``<out>/pairs.npz``); with ``npz``, a paired-features file;
2. the translator (:func:`tfface.experiments.translators.train_and_evaluate`): R3AN, a Table-3
   variant, the FC baseline or the closed-form linear one, with TensorBoard logs, ``history.json``
   (the recipe as trained) and ``translator.keras`` under ``<out>``;
3. with ``eval.enabled`` (built-in only), the MegaFace per-pair top-1 on held-out identities with
   distractors, next to each model's own top-1;
4. with ``export``, a TF Serving SavedModel under ``<out>/export/translator/1`` (signature
   ``source_features -> target_features``), checked in a fresh process (:func:`export_translator`);
5. ``<out>/report.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfface.errors import ConfigError, DataError
from tfface.methods.r3an.config import R3ANRecipe

__all__ = ["export_translator", "run_recipe", "triplets"]


def export_translator(translator, export_dir: str | os.PathLike, sample: np.ndarray, onnx: bool = False) -> dict:
    """Export ``translator`` as a TF Serving SavedModel (``<export_dir>/translator/1``), check its
    signature in a fresh process and, with ``onnx``, write ``translator.onnx`` and its parity with
    onnxruntime on ``sample``. Returns the export section of a report."""
    from tfface.export import check_saved_model, export_saved_model
    from tfface.signatures import SOURCE_FEATURES, TARGET_FEATURES

    src, tgt = int(translator.input_shape[-1]), int(translator.output_shape[-1])
    export_dir = Path(export_dir)
    version_dir = export_saved_model(translator, export_dir, name="translator", version=1,
                                     input_name=SOURCE_FEATURES, output_name=TARGET_FEATURES,
                                     input_shape=(src,), warmup_inputs=sample[:8], overwrite=True)
    check = check_saved_model(version_dir, expected_inputs={SOURCE_FEATURES: [None, src]},
                              expected_outputs={TARGET_FEATURES: [None, tgt]})
    out = {"saved_model": str(version_dir), "check_ok": bool(check["ok"]), "problems": check["problems"]}
    if onnx:
        from tfface.export.onnx import export_onnx, onnx_parity

        onnx_path = export_onnx(translator, export_dir / "translator.onnx", (src,), input_name=SOURCE_FEATURES)
        out.update(onnx=str(onnx_path), onnx_max_abs_diff=float(onnx_parity(translator, onnx_path, sample[:64])))
    return out


def model_embedder(ref: str, preprocessing: str | None, where: str, verbose: int | str = "auto"):
    """An :class:`~tfface.embed.Embedder` for a recipe's model reference.

    ``dlib`` (dlib's detect-align-describe) and ``dlib:chip`` (its descriptor on ``dlib150``-aligned
    chips); a preset (``preset:NAME``), a ``.keras`` embedder or a recognizer recipe (their own
    ``tfface<size>`` preprocessing unless one is given); any other path is a model file or folder that
    :meth:`Embedder.load` reads (SavedModel, ``.onnx``, ``.tflite``) with ``preprocessing`` required."""
    from tfface.embed import Embedder
    from tfface.experiments.train_recognizer import embedder_for

    ref = str(ref)
    from tfface.embed.dlib_face import MODEL_NAMES, dlib_chip_embedder, dlib_embedder

    if ref in MODEL_NAMES:
        return dlib_chip_embedder() if ref == "dlib:chip" else dlib_embedder()
    if ref.startswith("preset:") or ref.endswith((".keras", ".yaml", ".yml")) or "/" not in ref and "." not in ref:
        model, rec, _ = embedder_for(ref, verbose=verbose, where=where)
        size = rec.data.builtin.image_size if rec is not None and rec.data.source == "builtin" else None
        prep = preprocessing or (f"tfface{size}" if size else None)
        if prep is None:
            raise ConfigError(f"{where}_preprocessing: required for {ref} (its recipe does not say its input)")
        return Embedder.from_keras(model, prep)
    if not preprocessing:
        raise ConfigError(f"{where}_preprocessing: required for the model file {ref} (a registered preprocessing, "
                          "e.g. mobilefacenet_onnx, arcface_onnx)")
    if not Path(ref).exists():
        raise ConfigError(f"{where}: {ref} not found (expected dlib, dlib:chip, preset:NAME, a .keras file, a "
                          "recognizer recipe, a SavedModel folder, .onnx or .tflite)")
    return Embedder.load(ref, preprocessing)


def rendered_sets(recipe: R3ANRecipe, out: Path, verbose: int | str = "auto"):
    """``source: rendered``: training triplets of new rendered identities through the recipe's two models,
    and (with ``eval.enabled``) held-out test identities and distractors rendered the same way."""
    from tfface.experiments.translators import TranslationSets
    from tfface.translation.triplets import rendered_triplets

    d, ev = recipe.data, recipe.eval
    spec = d.triplet_spec()
    old = model_embedder(d.old, d.old_preprocessing, "data.old", verbose)
    new = model_embedder(d.new, d.new_preprocessing, "data.new", verbose)
    progress = verbose != 0
    build = lambda sp, sub: rendered_triplets(old, new, sp, out / "triplets" / sub, d.old_alignment,  # noqa: E731
                                              d.new_alignment, progress=progress)
    pairs, info = build(spec, "train")
    sets = None
    if ev.enabled:
        test, _ = build(spec.replace(num_identities=ev.identities, images_per_identity=ev.images_per_identity,
                                     identity_offset=spec.identity_offset + 10_000_000), "test")
        dis, _ = build(spec.replace(num_identities=ev.distractors, images_per_identity=1,
                                    identity_offset=spec.identity_offset + 20_000_000), "distractors")
        sets = TranslationSets({"old": test.source, "new": test.target}, {"old": dis.source, "new": dis.target},
                               test.labels)
    keep = ("spec", "old", "new", "faces_per_second", "seconds", "computed_chunks", "reused_chunks")
    info = {k: info[k] for k in keep} | {"distractors": ev.distractors if ev.enabled else 0}
    real_test = None
    if d.real is not None:
        pairs, info["real"], real_test = mix_real_pairs(pairs, old, new, recipe, out, progress)
    return pairs, sets, info, real_test


def split_identities(pairs, test_fraction: float, seed: int):
    """``(train, test)`` PairedFeatures with ``test_fraction`` of the identities (seeded) held out."""
    from tfface.methods.r3an.data import PairedFeatures

    ids = np.unique(pairs.labels)
    test_ids = np.random.default_rng(seed).permutation(ids)[:int(round(test_fraction * len(ids)))]
    mask = np.isin(pairs.labels, test_ids)
    pick = lambda m: PairedFeatures(pairs.faces[m], pairs.source[m], pairs.target[m], pairs.labels[m])  # noqa: E731
    return pick(~mask), pick(mask)


def mix_real_pairs(renders, old, new, recipe: R3ANRecipe, out: Path, progress: bool):
    """``data.real``: the user's faces as triplets (:func:`tfface.translation.real_triplets.real_triplets`),
    their training identities repeated ``weight`` times beside the renders (labels after the renders'),
    the held-out ones kept for :func:`real_face_metrics`. Returns ``(mixed pairs, info, held-out pairs)``."""
    from tfface.methods.r3an.data import PairedFeatures
    from tfface.translation.real_triplets import real_triplets

    d = recipe.data
    real, info = real_triplets(old, new, d.real.path, out / "triplets" / "real", d.old_alignment, d.new_alignment,
                               progress=progress)
    train, test = split_identities(real, d.real.test_fraction, d.real.seed)
    if not len(train):
        raise ConfigError(f"data.real.test_fraction: {d.real.test_fraction} leaves no real identity to train on")
    k = int(d.real.weight)
    offset = int(renders.labels.max()) + 1
    mixed = PairedFeatures(*(np.concatenate([getattr(renders, f)] + [getattr(train, f)] * k)
                             for f in ("faces", "source", "target")),
                           np.concatenate([renders.labels] + [train.labels + offset] * k))
    info |= {"weight": k, "train_pairs": len(train), "test_pairs": len(test), "renders": len(renders),
             "real_share": round(k * len(train) / len(mixed), 4)}
    return mixed, info, test


def real_face_metrics(translate, test) -> dict:
    """On the held-out real identities: rank-1 of translated old probes against a gallery of the first
    image's new feature per identity, beside the new model's own rank-1 on the same split (and the
    untranslated old features' when the dimensions agree)."""
    from tfface.eval.identification import identify

    lab = test.labels
    first = np.array([np.flatnonzero(lab == c)[0] for c in np.unique(lab)])
    rest = np.setdiff1d(np.arange(len(lab)), first)
    if not len(rest):
        raise DataError("data.real: the held-out real identities need 2 or more images each")

    def rank1(probe):
        return float(identify(probe[rest], lab[rest], test.target[first], lab[first], ranks=(1,)).rank_accuracy[1])

    out = {"translated_rank1": rank1(np.asarray(translate(test.source), np.float32)),
           "new_own_rank1": rank1(test.target), "identities": int(len(first)), "probes": int(len(rest))}
    if test.source.shape[1] == test.target.shape[1]:
        out["untranslated_rank1"] = rank1(test.source)
    return out


def triplets(recipe: R3ANRecipe, out: Path, verbose: int | str = "auto"):
    """``(PairedFeatures, TranslationSets or None, info, held-out real pairs or None)`` for the recipe's data
    section."""
    from tfface.methods.r3an.data import build_pairs, load_pairs

    d = recipe.data
    if d.source == "npz":
        return load_pairs(d.path), None, {"pairs": d.path}, None
    if d.source == "rendered":
        return rendered_sets(recipe, out, verbose)
    from tfface.embed import Embedder
    from tfface.experiments.demo import render_demo_sets
    from tfface.experiments.train_recognizer import embedder_for
    from tfface.experiments.translators import embed_sets

    models, recipes, info = {}, {}, {}
    for role, ref in (("old", d.old), ("new", d.new)):
        models[role], recipes[role], info[role] = embedder_for(ref, verbose=verbose, where=f"data.{role}")
    world = recipes["old"] or recipes["new"]
    if world is None or world.data.source != "builtin":
        raise ConfigError("data.old, data.new: the built-in source needs a built-in recognizer recipe as old or "
                          "new (its data.builtin and eval sections define the faces)")
    train, test, distract = render_demo_sets(world)
    prep = f"tfface{world.data.builtin.image_size}"
    old, new = (Embedder.from_keras(models[r], prep) for r in ("old", "new"))
    pairs = build_pairs(train.images, train.labels, old, new, cache=out / "pairs.npz")
    sets = embed_sets(test, distract, old, new) if recipe.eval.enabled else None
    info.update(world=world.name, distractors=int(len(distract)))
    return pairs, sets, info, None


def select_variant(recipe: R3ANRecipe, pairs, verbose: int | str = "auto") -> tuple[str, dict]:
    """With several variants: train each on the training identities less a held-out ``select_fraction``
    of them, and keep the one whose translations of the held-out identities are closest to their true
    target features (mean cosine). Returns ``(winner, {variant: held-out metrics})``."""
    from tfface.experiments.translators import train_and_evaluate

    ids = np.unique(pairs.labels)
    rng = np.random.default_rng(int(recipe.translator.get("seed", 0)))
    held_ids = rng.choice(ids, max(1, int(round(recipe.eval.select_fraction * len(ids)))), replace=False)
    held = np.isin(pairs.labels, held_ids)
    fit, val = pairs.subset(~held), pairs.subset(held)
    t = recipe.train
    scores = {}
    for v in recipe.variants:
        config = "linear" if v == "linear" else recipe.translator_config(pairs.source_dim, pairs.target_dim, v)
        res, _, _ = train_and_evaluate(config, fit, None, t.epochs, t.batch_size, ridge=t.ridge,
                                       bn_recalibration=t.bn_recalibration, verbose=verbose)
        pred = res.translator.predict(val.source, batch_size=1024, verbose=0)
        pred /= np.maximum(np.linalg.norm(pred, axis=1, keepdims=True), 1e-12)
        scores[v] = {"held_out_mean_cosine": float(np.mean(np.sum(pred * val.target, axis=1))),
                     "train_seconds": round(res.seconds, 2)}
    winner = max(scores, key=lambda v: scores[v]["held_out_mean_cosine"])
    return winner, {"held_out_identities": int(len(held_ids)), "criterion": "held_out_mean_cosine", "scores": scores}


def run_recipe(recipe: R3ANRecipe, out_dir: str | os.PathLike | None = None, verbose: int | str = "auto") -> dict:
    """Run an R3AN recipe (see the module docstring); returns the summary written to ``report.json``."""
    from tfface.eval.report import write_json
    from tfface.experiments.translators import own_top1, train_and_evaluate

    out = Path(out_dir or recipe.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs, sets, info, real_test = triplets(recipe, out, verbose)
    variant, selection = recipe.variants[0], None
    if len(recipe.variants) > 1:
        variant, selection = select_variant(recipe, pairs, verbose)
    config = "linear" if variant == "linear" else recipe.translator_config(pairs.source_dim, pairs.target_dim, variant)
    t = recipe.train
    res, metrics, _ = train_and_evaluate(config, pairs, sets, t.epochs, t.batch_size, out_dir=out, ridge=t.ridge,
                                         bn_recalibration=t.bn_recalibration, record=recipe,
                                         verbose=verbose)
    report = {"name": recipe.name, "variant": variant, "triplets": len(pairs), "data": info,
              "metrics": metrics, "translator": str(out / "translator.keras")}
    if selection is not None:
        report["selection"] = selection
    if sets is not None:
        report["own_top1"] = own_top1(sets)
        report["untranslated_top1"] = untranslated_top1(sets)
    if real_test is not None and len(real_test):
        report["real_faces"] = real_face_metrics(lambda x: res.translator.predict(x, verbose=0), real_test)
    if recipe.export:
        report["export"] = export_translator(res.translator, out / "export", pairs.source[:64], onnx=recipe.onnx)
    write_json(report, out / "report.json")
    return report


def untranslated_top1(sets) -> float | None:
    """Old probes straight against the new gallery (the incompatibility translation fixes), when the
    two spaces have the same dimension; else None."""
    from tfface.methods.r3an.evaluation import cross_top1

    if sets.test["old"].shape[1] != sets.test["new"].shape[1]:
        return None
    return cross_top1(sets.test["old"], sets.test["new"], sets.labels, sets.distractors["new"])
