"""``tfface bench ftl``: the spec's section 8.2 test of FTL's claim on the built-in world, claims fixed first.

Claim under test: transferring the regular classes' principal intra-class variation onto the
under-represented (UR) centres (Eq. 7) and alternating Stage 1 / Stage 2 raises UR accuracy and removes
the classifier's weight-norm bias, without hurting regular classes, beyond what re-sampling does.

Per seed, one long-tailed set (the spec's R100-U100 by default: 100 regular identities x 60 training
images, 100 UR x 5; 20 test and 5 validation images per class; 100 unseen identities x 10) and two
pretrained checkpoints (Eq. 4 with alpha_reg = 0 for ``sfmx``, with m-L2 for every other row); every
variant then trains for the same ``cycles x 2 x iterations`` iterations:

- B0 ``sfmx``, B1 ``sfmx_ml2``, B2 ``resample`` (class-balanced), B3 ``ftl_no_transfer``, B4 ``ftl_gauss``,
  B5 ``ftl_stage1_only`` and ``ftl``; ``pretrained`` is the m-L2 checkpoint itself (rho "before").

Metrics (:func:`tfface.methods.ftl.evaluation.evaluate_networks`): closed-set top-1 and NN rank-1 split
regular / UR, rho, the Spearman correlation of ||w_j|| with the class count, the share of UR test images
predicted as regular, unseen-pair verification on f and on g; and, on the pretrained encoder, the centre
error of PickOne / AvgAll / AvgFlip from 1, 5, 10, 20 images (all poses, and one side only: the biased case).

"Clearly" (the spec's rule): the mean gap exceeds the pooled seed standard deviation and has the same
sign in every seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from tfface.experiments.runner import Claim, Grid, check_claims, claims_markdown, run_grid

__all__ = ["FTLBenchConfig", "bench_ftl", "ftl_claims"]

ROWS = ("sfmx", "sfmx_ml2", "resample", "ftl_no_transfer", "ftl_gauss", "ftl_stage1_only", "ftl")


@dataclass(frozen=True)
class FTLBenchConfig:
    split: dict = field(default_factory=lambda: {"num_regular": 100, "num_ur": 100})  # LongTailConfig fields
    model: dict = field(default_factory=lambda: {"pretrain_learning_rate": 1e-3, "stage_learning_rate": 1e-4})
    pretrain_epochs: int = 10
    cycles: int = 4
    iterations: int = 100
    variants: tuple[str, ...] = ROWS
    pairs: int = 3000
    centre_sizes: tuple[int, ...] = (1, 5, 10, 20)

    @classmethod
    def small(cls) -> FTLBenchConfig:
        """A CI-sized run (a smoke test of the benchmark, not a result)."""
        return cls(split={"num_regular": 6, "num_ur": 6, "train_per_regular": 12, "val_per_class": 1,
                          "test_per_class": 3, "unseen_identities": 6, "unseen_per_identity": 3},
                   pretrain_epochs=1, cycles=1, iterations=3, pairs=20, centre_sizes=(1, 5),
                   model={"pretrain_learning_rate": 1e-3, "stage_learning_rate": 1e-4, "batch_size": 16})


def clearly(a: np.ndarray, b: np.ndarray) -> bool:
    """Mean of ``a - b`` above the pooled seed std of a and b, and ``a > b`` in every seed."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0 or np.isnan(a).any() or np.isnan(b).any():
        return False
    pooled = np.sqrt((a.std(ddof=1) ** 2 + b.std(ddof=1) ** 2) / 2) if a.size > 1 else 0.0
    return bool((a - b).mean() > pooled and (a > b).all())


def ftl_claims() -> list[Claim]:
    """Spec 8.2's C1-C5 and its directional secondary checks, fixed before the run."""

    def has(g, *rows):
        return all(r in g.values for r in rows)

    def c1(g):
        if not has(g, "sfmx"):
            return None
        return clearly(g.col("sfmx", "rho"), np.ones_like(g.col("sfmx", "rho"))) and \
            clearly(g.col("sfmx", "top1/regular"), g.col("sfmx", "top1/ur"))

    def c2(g):
        if not has(g, "ftl", "sfmx_ml2", "resample"):
            return None
        return all(clearly(g.col("ftl", m), g.col(b, m)) for m in ("top1/ur", "nn/ur") for b in ("sfmx_ml2", "resample"))

    def c3(g):
        if not has(g, "ftl", "sfmx_ml2"):
            return None
        return bool(g.mean("ftl", "top1/regular") >= g.mean("sfmx_ml2", "top1/regular") - 0.01)

    def c4(g):
        if not has(g, "ftl", "sfmx_ml2", "resample"):
            return None
        rho = abs(g.mean("ftl", "rho") - 1) < abs(g.mean("sfmx_ml2", "rho") - 1)
        err = g.mean("ftl", "ur_to_regular") < min(g.mean("sfmx_ml2", "ur_to_regular"),
                                                    g.mean("resample", "ur_to_regular"))
        return bool(rho and err)

    def c5(g):
        return None if not has(g, "ftl", "ftl_no_transfer") else \
            clearly(g.col("ftl", "top1/ur"), g.col("ftl_no_transfer", "top1/ur"))

    def f_beats_g(g):
        return None if not has(g, "ftl") else bool(g.mean("ftl", "verification/f") > g.mean("ftl", "verification/g"))

    def pca_beats_gauss(g):
        return None if not has(g, "ftl", "ftl_gauss") else bool(g.mean("ftl", "top1/ur") > g.mean("ftl_gauss", "top1/ur"))

    def flip_helps_biased(g):
        return None if not has(g, "pretrained") else \
            bool(g.mean("pretrained", "biased/avg_flip/5") < g.mean("pretrained", "biased/avg_all/5"))

    return [
        Claim("C1_premise", "sfmx: rho clearly above 1 and UR top-1 clearly below regular top-1", c1),
        Claim("C2_main", "FTL's UR top-1 and UR NN rank-1 clearly above both sfmx+m-L2 and re-sampling", c2),
        Claim("C3_no_harm", "FTL's regular top-1 >= sfmx+m-L2's - 1 point", c3),
        Claim("C4_bias", "|rho_FTL - 1| < |rho_sfmx+m-L2 - 1| and fewer UR->regular errors than sfmx+m-L2 and "
              "re-sampling", c4),
        Claim("C5_transfer_matters", "FTL's UR top-1 clearly above FTL without transfer", c5),
        Claim("f_beats_g", "secondary: unseen-pair verification on f above g (FTL)", f_beats_g),
        Claim("pca_beats_gauss", "secondary: FTL's UR top-1 above FTL-Gauss's", pca_beats_gauss),
        Claim("flip_helps_biased", "secondary: one-sided poses, 5 images: AvgFlip centre error below AvgAll's",
              flip_helps_biased),
    ]


def _centre_metrics(nets, data: dict, sizes, seed: int) -> dict:
    """Fig. 4a on the regular classes' training images with the pretrained encoder: all poses, and only
    images of one side (yaw in the biased range)."""
    from tfface.data.long_tail import LongTailConfig
    from tfface.methods.ftl.evaluation import centre_errors
    from tfface.training.ftl import flip

    reg = data["train_y"] < data["num_regular"]
    x, y, yaw = data["train_x"][reg], data["train_y"][reg], data["train_yaw"][reg]
    g, _ = nets.features(x)
    gf, _ = nets.features(flip(x))
    out = {f"centre/{k}": v for k, v in centre_errors(g, gf, y, sizes, seed).items()}
    lo, hi = LongTailConfig().biased_yaw
    pools = {int(c): np.flatnonzero((y == c) & (yaw >= lo) & (yaw <= hi)) for c in np.unique(y)}
    pools = {c: p for c, p in pools.items() if len(p) >= 2}  # n above a pool's size: all of it
    keep = np.isin(y, list(pools))
    if pools:
        idx = np.flatnonzero(keep)
        remap = {c: np.flatnonzero(np.isin(idx, p)) for c, p in pools.items()}
        out |= {f"biased/{k}": v for k, v in centre_errors(g[keep], gf[keep], y[keep], sizes, seed, remap).items()}
    return out


def bench_ftl(seeds: int = 3, small: bool = False, config: FTLBenchConfig | None = None) -> dict:
    """Run the benchmark (module docstring); the result has the JSON fields and ``markdown``."""
    from tfface.data.long_tail import LongTailConfig, make_long_tail
    from tfface.experiments.machine import machine_info, provenance_line
    from tfface.methods.ftl import FTLConfig, FTLNetworks
    from tfface.methods.ftl.evaluation import evaluate_networks
    from tfface.training.ftl import pretrain, train_variant

    cfg = config or (FTLBenchConfig.small() if small else FTLBenchConfig())
    split = LongTailConfig(**cfg.split)
    t0 = time.perf_counter()
    data = make_long_tail(split)
    seconds: dict[str, list[float]] = {}

    def prepare(seed):
        model = FTLConfig(**cfg.model, seed=seed)
        t = time.perf_counter()
        ckpt = {"ml2": pretrain(model, data, cfg.pretrain_epochs)[0]}
        if "sfmx" in cfg.variants:
            ckpt["sfmx"] = pretrain(model, data, cfg.pretrain_epochs, alpha_reg=0.0)[0]
        seconds.setdefault("pretrain", []).append(time.perf_counter() - t)
        return model, ckpt

    def run_one(seed, variant, ctx):
        model, ckpt = ctx
        t = time.perf_counter()
        if variant == "pretrained":
            nets = FTLNetworks(model, data["num_classes"])
            nets.set_weights(ckpt["ml2"])
            out = evaluate_networks(nets, data, cfg.pairs, seed) | _centre_metrics(nets, data, cfg.centre_sizes, seed)
        else:
            res = train_variant(variant, model, data, ckpt["sfmx" if variant == "sfmx" else "ml2"], cfg.cycles,
                                cfg.iterations)
            out = evaluate_networks(res.nets, data, cfg.pairs, seed)
            if res.stats:
                out["pca_components"] = float(np.mean([s["components"] for s in res.stats]))
        seconds.setdefault(variant, []).append(time.perf_counter() - t)
        return out

    grid = run_grid(("pretrained", *cfg.variants), seeds, run_one, prepare_seed=prepare, desc="ftl runs")
    claims = ftl_claims()
    outcome = check_claims(claims, grid)
    result = {"config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}, "seeds": seeds,
              "classes": {"regular": data["num_regular"], "ur": data["num_classes"] - data["num_regular"]},
              "summary": grid.summary(),
              "claims": {c.name: {"criterion": c.criterion, "outcome": outcome[c.name]} for c in claims},
              "seconds_per_run": {k: round(float(np.mean(v)), 1) for k, v in seconds.items()},
              "seconds": round(time.perf_counter() - t0, 1)}
    command = "tfface bench ftl" + (" --small" if small else "") + f" --seeds {seeds}"
    result["markdown"] = markdown(result, grid, claims, outcome,
                                  provenance_line({"machine": machine_info(), "command": command}))
    return result


def markdown(result: dict, grid: Grid, claims, outcome, provenance: str) -> str:
    summary = result["summary"]

    def cell(row, key):
        v = summary.get(row, {}).get(key)
        if v is None or v["mean"] is None:
            return "-"
        k = 100.0
        return f"{k * v['mean']:.1f} ± {k * v['std']:.1f}" if len(v["runs"]) > 1 else f"{k * v['mean']:.1f}"

    cols = [("top1/regular", "top-1 reg %"), ("top1/ur", "top-1 UR %"), ("nn/regular", "NN reg %"),
            ("nn/ur", "NN UR %"), ("ur_to_regular", "UR->reg %"), ("verification/f", "verif. f %"),
            ("verification/g", "verif. g %")]
    lines = ["| model | " + " | ".join(c[1] for c in cols) + " | rho | Spearman |", "|---" * (len(cols) + 3) + "|"]
    def num(row, key):
        v = summary[row].get(key)
        return "-" if v is None or v["mean"] is None else f"{v['mean']:.3f} ± {v['std']:.3f}"

    for row in summary:
        lines.append(f"| {row} | " + " | ".join(cell(row, k) for k, _ in cols) + f" | {num(row, 'rho')} | "
                     f"{num(row, 'spearman')} |")
    pre = summary.get("pretrained", {})
    sizes = result["config"]["centre_sizes"]
    lines += ["", "Centre error (pretrained encoder, regular classes; / mean distance between centres):", "",
              "| images | " + " | ".join(f"{m} {kind}" for kind in ("all poses", "one side")
                                       for m in ("PickOne", "AvgAll", "AvgFlip")) + " |", "|---" * 7 + "|"]
    for n in sizes:
        vals = []
        for kind in ("centre", "biased"):
            for m in ("pick_one", "avg_all", "avg_flip"):
                v = pre.get(f"{kind}/{m}/{n}")
                vals.append("-" if v is None or v["mean"] is None else f"{v['mean']:.3f}")
        lines.append(f"| {n} | " + " | ".join(vals) + " |")
    per = ", ".join(f"{k} {v:.0f} s" for k, v in result["seconds_per_run"].items())
    lines += ["", "### Claims (spec 8.2)", "", claims_markdown(claims, outcome), "",
              f"Seconds per run (mean over seeds): {per}; total {result['seconds']:.0f} s.", "", provenance]
    return "\n".join(lines)
