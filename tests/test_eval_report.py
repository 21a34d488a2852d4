"""JSON reports, markdown tables and plots (tfface.eval.report, tfface.eval.plots)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from tfface.errors import DataError
from tfface.eval import (
    identify,
    markdown_table,
    plot_cmc,
    plot_roc,
    plot_similarity_histograms,
    similarity_distributions,
    verification_scores,
    write_json,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _strict_load(path):
    def reject(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=reject)


@dataclass
class _Summary:
    name: str
    values: np.ndarray
    score: float


def _verification():
    rng = np.random.default_rng(0)
    issame = rng.random(200) < 0.5
    return verification_scores(rng.normal(size=200) + issame, issame)


def test_write_json_converts_and_nulls_nan(tmp_path):
    path = tmp_path / "out" / "report.json"
    obj = {
        "verification": _verification(),
        "summary": _Summary("a", np.array([1.0, np.nan]), float("inf")),
        "scalars": (np.float32(0.5), np.int64(3), np.bool_(True), np.nan),
        1e-6: None,
    }
    assert write_json(obj, path) == path
    data = _strict_load(path)
    assert data["summary"] == {"name": "a", "values": [1.0, None], "score": None}
    assert data["scalars"] == [0.5, 3, True, None]
    assert data["1e-06"] is None
    assert data["verification"]["tar_at_far"]["1e-06"] is None
    assert 0.5 < data["verification"]["accuracy"] <= 1.0
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.json"]  # no temp file left


def test_write_json_failure_keeps_old_file(tmp_path):
    path = tmp_path / "report.json"
    write_json({"a": 1}, path)
    with pytest.raises(DataError, match=r"obj\['b'\]"):
        write_json({"b": object()}, path)
    assert _strict_load(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    write_json({"a": 2}, path)
    assert _strict_load(path) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_markdown_table():
    rows = [
        {"model": "r50", "acc": 0.99512, "far": None},
        {"model": "a|b", "acc": float("nan"), "far": 3},
        {"model": "c"},
    ]
    assert markdown_table(rows, ["model", "acc", "far"], floatfmt=".3f") == (
        "| model | acc | far |\n|---|---|---|\n| r50 | 0.995 | n/a |\n| a\\|b | n/a | 3 |\n| c |  |  |\n"
    )
    with pytest.raises(DataError, match="columns"):
        markdown_table(rows, [])
    with pytest.raises(DataError, match=r"rows\[0\]"):
        markdown_table([1], ["a"])


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == PNG_MAGIC


def test_plots_write_png_atomically(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 3)
    feats = rng.normal(size=(8, 6))[labels] + 0.8 * rng.normal(size=(24, 6))
    ver = {"a": _verification(), "b": _verification()}
    idn = {"a": identify(feats[1::3], labels[1::3], feats[::3], labels[::3], ranks=(1, 5))}
    dst = {"a": similarity_distributions(feats, labels, n_bins=20)}
    for fn, results, name in (
        (plot_roc, ver, "roc.png"),
        (plot_cmc, idn, "cmc.png"),
        (plot_similarity_histograms, dst, "sim.png"),
    ):
        assert fn(results, tmp_path / name) == tmp_path / name
        assert _is_png(tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmc.png", "roc.png", "sim.png"]


def test_plots_bad_input(tmp_path):
    with pytest.raises(DataError, match="results"):
        plot_roc({}, tmp_path / "x.png")
    with pytest.raises(DataError, match=r"results\['a'\]"):
        plot_cmc({"a": _verification()}, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []
