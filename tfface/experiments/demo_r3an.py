"""The demo's R3AN part: translate the old recognizer's features into the new one's space.

Called by :func:`tfface.experiments.demo.run_demo` after the two recognizers: builds the (56x56 face, old feature,
new feature) triplets of the training identities, trains R3AN and the FC and linear baselines, evaluates
on the held-out identities with distractors (MegaFace per-pair top-1, probe and gallery
transformation, the compatibility matrix), writes the reconstruction grid (the paper's Fig. 4) and the
feature projection (Fig. 2), and exports the R3AN translator as a TF Serving SavedModel (checked in a
fresh process) and as ONNX (parity with onnxruntime).

The demo's R3AN budget is smaller than the benchmark's (``tfface bench r3an``): see :data:`DEMO_BUDGET`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

#: epochs, batch size, channel width of G/E, optimizer and learning rate used by the demo.
DEMO_BUDGET = {"epochs": 4, "batch_size": 64, "width": 0.5, "optimizer": "adam", "learning_rate": 1e-3,
               "fc_epochs": 12}
QUICK_BUDGET = {"epochs": 1, "batch_size": 16, "width": 0.25, "optimizer": "adam", "learning_rate": 1e-3,
                "fc_epochs": 1}


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def save_reconstruction_grid(grid: np.ndarray, path: Path, pairs_per_row: int = 4) -> Path:
    """``[real, fake, real, fake, ...]`` float images in [-1, 1] -> one PNG, each real face left of its G(x)."""
    from PIL import Image

    from tfface.atomic import atomic_path
    from tfface.training.callbacks import image_grid

    img = (image_grid(grid, cols=2 * pairs_per_row) * 255).round().astype(np.uint8)
    img = np.kron(img, np.ones((2, 2, 1), np.uint8))  # 2x upscale for viewing
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(img).save(tmp, format="PNG")
    return path


def run_translation(train, test, distract, old, new, out: Path, quick: bool = False) -> dict:
    """``old``/``new``: :class:`tfface.embed.Embedder`; returns the report section (JSON-able)."""
    from tfface.experiments.runner import run_grid
    from tfface.experiments.train_r3an import export_translator
    from tfface.experiments.translators import embed_sets, own_top1, train_and_evaluate
    from tfface.methods.r3an import R3ANConfig
    from tfface.methods.r3an.data import build_pairs
    from tfface.methods.r3an.evaluation import compatibility_matrix, error_reduction, plot_projection
    from tfface.training.r3an import reconstruction_grid

    budget = QUICK_BUDGET if quick else DEMO_BUDGET
    out = Path(out)
    t0 = time.perf_counter()
    pairs = build_pairs(train.images, train.labels, old, new)
    sets = embed_sets(test, distract, old, new)
    translators, translated = {}, {}

    def run_one(seed: int, method: str, _context) -> dict:
        if method == "linear":
            cfg = "linear"
        else:
            cfg = R3ANConfig(variant=method, source_dim=pairs.source_dim, target_dim=pairs.target_dim,
                             width=budget["width"], optimizer=budget["optimizer"],
                             learning_rate=budget["learning_rate"], seed=seed)
        epochs = budget["fc_epochs"] if method == "fc" else budget["epochs"]
        _say(f"4/5 training the {method} translator old -> new ({len(pairs)} triplets"
             + ("" if method == "linear" else f", {epochs} epochs") + ")")
        res, metrics, translated[method] = train_and_evaluate(
            cfg, pairs, sets, epochs, budget["batch_size"],
            out_dir=out / f"translator_{method}" if method == "r3an" else None, verbose=2)
        translators[method] = res
        return {k: v for k, v in metrics.items() if k not in ("train_seconds", "parameters")}

    grid = run_grid(("linear", "fc", "r3an"), [0], run_one, desc="demo translators")
    results = {m: {k: v["mean"] for k, v in row.items()} for m, row in grid.summary().items()}
    r3an = translators["r3an"]
    lab = sets.labels
    spaces = {"old": sets.test["old"], "R3AN(old)": translated["r3an"][0], "new": sets.test["new"]}
    dspaces = {"old": sets.distractors["old"], "R3AN(old)": translated["r3an"][1], "new": sets.distractors["new"]}
    compat = compatibility_matrix(spaces, dspaces, lab)
    save_reconstruction_grid(reconstruction_grid(r3an.model, pairs, n=8), out / "reconstruction.png")
    plot_projection(spaces, lab, out / "translation_projection.png",
                    title="old, translated and new features of 10 test identities (PCA of new)")

    _say("5/5 exporting the R3AN translator (TF Serving SavedModel + ONNX) and checking both")
    export = export_translator(r3an.translator, out / "export", sets.test["old"][:64], onnx=True)
    p = {m: r["probe_transform_top1"] for m, r in results.items()}
    return {
        "budget": budget, "train_triplets": len(pairs), "seconds": round(time.perf_counter() - t0, 1),
        "train_seconds": {k: round(v.seconds, 1) for k, v in translators.items()},
        "parameters": {k: v.parameters for k, v in translators.items()},
        "own_top1": own_top1(sets), "methods": results, "compatibility": compat,
        "error_reduction_vs_fc": error_reduction(p["r3an"], p["fc"]),
        "error_reduction_vs_linear": error_reduction(p["r3an"], p["linear"]),
        "export": export,
        "final_losses": {k: v[-1] for k, v in r3an.history.items()},
    }


def translation_markdown(s: dict, distractors: int) -> str:
    names = list(s["compatibility"])
    lines = [
        "## Feature translation old -> new (R3AN)", "",
        f"Trained on {s['train_triplets']} triplets (56x56 face, old feature, new feature) of the training "
        f"identities; evaluated on the held-out identities with {distractors} distractors, MegaFace per-pair "
        "top-1 (probe a, gallery {b} + distractors). Demo budget (smaller than `tfface bench r3an`): "
        f"{s['budget']['epochs']} epochs, G/E width {s['budget']['width']}, {s['budget']['optimizer']} "
        f"lr {s['budget']['learning_rate']}; FC {s['budget']['fc_epochs']} epochs.", "",
        "| translator | probe transformed (X\\|new) | gallery transformed (new\\|X) | mean cos(T(x), y) | "
        "parameters | train s |", "|---|---|---|---|---|---|",
    ]
    for m, r in s["methods"].items():
        lines.append(f"| {m} | {r['probe_transform_top1']:.3f} | {r['gallery_transform_top1']:.3f} | "
                     f"{r['mean_cosine']:.3f} | {s['parameters'][m]:,} | {s['train_seconds'][m]} |")
    lines += ["", f"Own accuracy: old {s['own_top1']['old']:.3f}, new {s['own_top1']['new']:.3f}. "
              f"R3AN's top-1 error reduction vs FC: {s['error_reduction_vs_fc']:+.1%}; vs linear: "
              f"{s['error_reduction_vs_linear']:+.1%}.", "",
              "Compatibility matrix (rows: probe features, columns: gallery and distractor features):", "",
              "| probe \\ gallery | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for a in names:
        lines.append(f"| {a} | " + " | ".join(f"{s['compatibility'][a].get(b, float('nan')):.3f}" for b in names)
                     + " |")
    e = s["export"]
    lines += ["", "Reconstructions (each real 56x56 face left of G(its old feature), the paper's Fig. 4):", "",
              "![reconstructions](reconstruction.png)", "", "![projection](translation_projection.png)", "",
              f"Exported: `{e['saved_model']}` (TF Serving layout; `tfface export check`: "
              f"{'passed' if e['check_ok'] else 'FAILED: ' + '; '.join(e['problems'])}) and `{e['onnx']}` "
              f"(onnxruntime max |diff| {e['onnx_max_abs_diff']:.2e}). Convert a stored gallery with "
              f"`tfface translate --translator {Path(e['saved_model']).parent} --in old.npz --out new.npz`.", ""]
    return "\n".join(lines)
