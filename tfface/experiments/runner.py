"""The one experiment runner: variants x seeds, mean ± std, and claims whose criteria are fixed before running.

Every benchmark (``tfface bench r3an``, ``tfface bench ddl``) and the demo's translator comparison go
through it, so each reports the same way::

    grid = run_grid(["linear", "r3an"], seeds=3, run_one=lambda seed, variant, ctx: {...metrics...})
    outcome = check_claims(CLAIMS, grid)        # the criteria were written down before the run
    summary = grid.summary()                    # {variant: {metric: {mean, std, runs}}}

``run_one(seed, variant, context)`` returns a flat ``{metric: number or None}``; ``prepare_seed(seed)``
(optional) builds what every variant of a seed shares (a pretrained checkpoint, a dataset) and is passed
as ``context``. A :class:`Claim` is a name, the criterion in words and a test of the grid; its outcome
(a bool, a number it reports, or ``None`` where the run cannot decide it) goes into the JSON next to the
criterion, whatever it is. The standard deviation is the sample one (``ddof=1``) over seeds.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Claim", "Grid", "check_claims", "claims_markdown", "mean_std", "run_grid"]


def mean_std(values: Iterable[float | None]) -> dict:
    """``{"mean", "std", "runs"}`` of per-seed values; ``None`` entries are skipped (all ``None``: ``None``)."""
    runs = [None if v is None else float(v) for v in values]
    a = np.array([np.nan if v is None else v for v in runs], np.float64)
    if a.size == 0 or np.isnan(a).all():
        return {"mean": None, "std": None, "runs": runs}
    ok = a[~np.isnan(a)]
    return {"mean": float(ok.mean()), "std": float(ok.std(ddof=1)) if ok.size > 1 else 0.0, "runs": runs}


@dataclass
class Grid:
    """Metric values per variant, one entry per seed in seed order."""

    values: dict[str, dict[str, list]] = field(default_factory=dict)

    def add(self, variant: str, metrics: Mapping[str, Any]) -> None:
        row = self.values.setdefault(variant, {})
        for k, v in metrics.items():
            if v is None or isinstance(v, int | float | np.integer | np.floating):
                row.setdefault(k, []).append(None if v is None else float(v))

    @property
    def variants(self) -> list[str]:
        return list(self.values)

    def col(self, variant: str, metric: str) -> np.ndarray:
        """Per-seed values (``NaN`` for ``None``); a missing variant or metric is a ``KeyError`` naming it."""
        if variant not in self.values:
            raise KeyError(f"no variant {variant!r} in the grid (have {self.variants})")
        if metric not in self.values[variant]:
            raise KeyError(f"variant {variant!r} has no metric {metric!r} (have {sorted(self.values[variant])})")
        return np.array([np.nan if v is None else v for v in self.values[variant][metric]], np.float64)

    def mean(self, variant: str, metric: str) -> float:
        return float(np.nanmean(self.col(variant, metric)))

    def summary(self) -> dict:
        return {v: {k: mean_std(vals) for k, vals in row.items()} for v, row in self.values.items()}


def run_grid(variants: Sequence[str], seeds: int | Sequence[int], run_one: Callable[[int, str, Any], Mapping],
             prepare_seed: Callable[[int], Any] | None = None, desc: str = "runs",
             on_result: Callable[[int, str, Mapping], None] | None = None) -> Grid:
    """Run every variant for every seed (seed-major, so a seed's shared context is built once) with a
    progress bar; returns the :class:`Grid`."""
    from tqdm.auto import tqdm

    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    grid = Grid()
    with tqdm(total=len(seed_list) * len(variants), desc=desc, unit="run", file=sys.stderr) as bar:
        for seed in seed_list:
            context = prepare_seed(seed) if prepare_seed is not None else None
            for variant in variants:
                bar.set_postfix_str(f"seed {seed}: {variant}")
                metrics = run_one(seed, variant, context)
                grid.add(variant, metrics)
                if on_result is not None:
                    on_result(seed, variant, metrics)
                bar.update(1)
    return grid


@dataclass(frozen=True)
class Claim:
    """A criterion fixed before running: ``test(grid)`` returns ``True``/``False``, a number to report, or
    ``None`` where this run cannot decide it (e.g. a variant outside the budget)."""

    name: str
    criterion: str
    test: Callable[[Grid], bool | float | None]


def check_claims(claims: Sequence[Claim], grid: Grid) -> dict[str, bool | float | None]:
    out: dict[str, bool | float | None] = {}
    for c in claims:
        v = c.test(grid)
        out[c.name] = v if v is None else (bool(v) if isinstance(v, bool | np.bool_) else float(v))
    return out


def claims_markdown(claims: Sequence[Claim], outcome: Mapping[str, Any]) -> str:
    lines = ["| claim | criterion (fixed before running) | outcome |", "|---|---|---|"]
    for c in claims:
        v = outcome.get(c.name)
        shown = "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
        lines.append(f"| {c.name} | {c.criterion} | {shown} |")
    return "\n".join(lines)
