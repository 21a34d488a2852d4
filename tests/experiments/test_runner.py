"""The one experiment runner and the claim checks of every benchmark, on hand-made grids with known answers."""

import numpy as np
import pytest

from tfface.experiments.ddl import ddl_claims, summarise
from tfface.experiments.r3an import METHODS, translator_claims
from tfface.experiments.runner import Claim, Grid, check_claims, claims_markdown, mean_std, run_grid


def test_mean_std_is_the_sample_std_and_skips_none():
    s = mean_std([1.0, 2.0, None, 3.0])
    assert s["mean"] == pytest.approx(2.0) and s["std"] == pytest.approx(1.0)
    assert s["runs"] == [1.0, 2.0, None, 3.0]
    assert mean_std([None, None])["mean"] is None
    assert mean_std([0.5])["std"] == 0.0


def test_run_grid_is_seed_major_and_builds_each_seeds_context_once():
    calls, prepared = [], []

    def prepare(seed):
        prepared.append(seed)
        return f"ckpt{seed}"

    def run_one(seed, variant, ctx):
        calls.append((seed, variant, ctx))
        return {"acc": seed + (0.5 if variant == "b" else 0.0), "name": "not a number", "none": None}

    grid = run_grid(["a", "b"], [3, 4], run_one, prepare_seed=prepare)
    assert prepared == [3, 4]
    assert calls == [(3, "a", "ckpt3"), (3, "b", "ckpt3"), (4, "a", "ckpt4"), (4, "b", "ckpt4")]
    np.testing.assert_array_equal(grid.col("b", "acc"), [3.5, 4.5])
    assert "name" not in grid.values["a"]  # non-numbers are not summarised
    assert np.isnan(grid.col("a", "none")).all()
    with pytest.raises(KeyError, match="'c'"):
        grid.col("c", "acc")
    with pytest.raises(KeyError, match="no metric 'loss'"):
        grid.col("a", "loss")


def test_claims_report_bools_numbers_and_undecided():
    grid = Grid()
    for v in (0.2, 0.4):
        grid.add("x", {"m": v})
    claims = [Claim("above", "mean > 0.25", lambda g: g.mean("x", "m") > 0.25),
              Claim("value", "the mean", lambda g: g.mean("x", "m")),
              Claim("later", "outside the budget", lambda g: None)]
    out = check_claims(claims, grid)
    assert out == {"above": True, "value": pytest.approx(0.3), "later": None}
    md = claims_markdown(claims, out)
    assert "| above | mean > 0.25 | True |" in md and "| later | outside the budget | n/a |" in md


def _r3an_grid(r3an, fc, others=0.1):
    grid = Grid()
    for seed in range(len(r3an)):
        for m in METHODS:
            p = {"r3an": r3an[seed], "fc": fc[seed]}.get(m, others)
            grid.add(m, {"probe_transform_top1": p, "gallery_transform_top1": p})
    return grid


def test_r3an_claims_decide_on_the_grid():
    own = {"source": 0.3, "target": 0.6}
    good = check_claims(translator_claims(own, raw=0.01), _r3an_grid([0.59, 0.6, 0.61], [0.2, 0.2, 0.2]))
    assert good["C1_r3an_beats_fc_every_seed"] and good["C2_r3an_within_3_points_of_target"]
    assert good["C1_error_reduction_vs_fc_mean"] == pytest.approx(0.5, abs=0.01)  # (0.8 - 0.4) / 0.8
    assert good["C1_qualitative_at_least_0.50"] is True and good["C1_quantitative_at_least_0.64"] is False
    assert good["precondition_raw_cross_top1_below_0.05"] and good["C3_arch3_at_least_arch1_plus_5"] is None
    bad = check_claims(translator_claims(own, raw=None), _r3an_grid([0.59, 0.1, 0.61], [0.2, 0.2, 0.2]))
    assert bad["C1_r3an_beats_fc_every_seed"] is False and bad["C2_r3an_within_3_points_of_target"] is False
    assert bad["precondition_raw_cross_top1_below_0.05"] is False


def _ddl_grid(ddl_overlap, seeds=3):
    grid = Grid()
    for seed in range(seeds):
        for arm, ov, r1 in (("pretrained", 0.5, 0.2), ("finetuned", 0.4, 0.3), ("ddl", ddl_overlap[seed], 0.35)):
            grid.add(f"resolution/{arm}", {"x8/overlap": ov, "x8/gap": ov, "x8/rank1": r1, "x8/tar@far=0.01": r1,
                                            "easy/rank1": 0.8, "easy/overlap": 0.1})
    return grid


def test_ddl_claims_decide_on_the_grid_and_summarise_nests_by_arm_and_subset():
    claims = ddl_claims("resolution", "x8")
    good = check_claims(claims, _ddl_grid([0.3, 0.3, 0.3]))
    assert good["reproduced"] is True and good["overlap_mean_relative_reduction"] == pytest.approx(0.25)
    bad = check_claims(claims, _ddl_grid([0.3, 0.45, 0.3]))  # one seed's overlap is worse
    assert bad["overlap_lower_every_seed"] is False and bad["reproduced"] is False
    s = summarise(_ddl_grid([0.3, 0.3, 0.3]), "resolution")
    assert s["ddl"]["x8"]["overlap"]["mean"] == pytest.approx(0.3)
    assert set(s) == {"pretrained", "finetuned", "ddl"} and set(s["ddl"]) == {"x8", "easy"}
