"""The demo's FTL section: a long-tailed set of the built-in world (40 regular identities x 40 training images,
40 under-represented ones x 5), one pretrained checkpoint, then sfmx + m-L2 continued against FTL's
alternating Stage 1 / Stage 2 for the same iterations: UR and regular top-1 and the weight-norm ratio rho.
About two minutes on 2 cores; the full comparison (every baseline, 3 seeds) is ``tfface bench ftl``."""

from __future__ import annotations

import time

__all__ = ["ftl_markdown", "run_ftl_section"]

SPLIT = {"num_regular": 40, "num_ur": 40, "train_per_regular": 40, "val_per_class": 2, "test_per_class": 10,
         "unseen_identities": 40, "unseen_per_identity": 5}
QUICK = {"num_regular": 8, "num_ur": 8, "train_per_regular": 12, "val_per_class": 1, "test_per_class": 3,
         "unseen_identities": 8, "unseen_per_identity": 3}


def run_ftl_section(quick: bool = False, seed: int = 0, progress: bool = True) -> dict:
    from tfface.data.long_tail import LongTailConfig, make_long_tail
    from tfface.methods.ftl import FTLConfig, FTLNetworks
    from tfface.methods.ftl.evaluation import evaluate_networks
    from tfface.training.ftl import pretrain, train_variant

    t0 = time.perf_counter()
    split = QUICK if quick else SPLIT
    data = make_long_tail(LongTailConfig(seed=seed, **split), progress=progress)
    cfg = FTLConfig(pretrain_learning_rate=1e-3, stage_learning_rate=1e-4, seed=seed,
                    batch_size=16 if quick else 64)
    epochs, cycles, iterations = (1, 1, 2) if quick else (8, 3, 60)
    weights, _ = pretrain(cfg, data, epochs)
    pre = FTLNetworks(cfg, data["num_classes"])
    pre.set_weights(weights)
    pairs = 20 if quick else 1000
    rows = {"pretrained": evaluate_networks(pre, data, pairs)}
    for variant in ("sfmx_ml2", "ftl"):
        rows[variant] = evaluate_networks(train_variant(variant, cfg, data, weights, cycles, iterations).nets, data,
                                          pairs)
    return {"split": split, "pretrain_epochs": epochs, "cycles": cycles, "iterations": iterations, "metrics": rows,
            "seconds": round(time.perf_counter() - t0, 1)}


def ftl_markdown(section: dict) -> str:
    s = section["split"]
    lines = ["## FTL: under-represented identities", "",
             f"{s['num_regular']} regular identities x {s['train_per_regular']} training images and {s['num_ur']} "
             f"under-represented ones x 5; pretrained {section['pretrain_epochs']} epochs, then "
             f"{section['cycles']} cycles x 2 x {section['iterations']} iterations of each row "
             f"({section['seconds']:.0f} s). `tfface bench ftl` runs every baseline with 3 seeds.", "",
             "| model | top-1 regular | top-1 UR | UR predicted as regular | rho (reg / UR weight norm) |",
             "|---|---|---|---|---|"]
    names = {"pretrained": "pretrained checkpoint", "sfmx_ml2": "softmax + m-L2, continued",
             "ftl": "FTL (Stage 1 / Stage 2 alternating)"}
    for key, m in section["metrics"].items():
        lines.append(f"| {names[key]} | {m['top1/regular']:.3f} | {m['top1/ur']:.3f} | {m['ur_to_regular']:.3f} | "
                     f"{m['rho']:.3f} |")
    return "\n".join(lines) + "\n"
