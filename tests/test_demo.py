"""The demo end to end in its quick mode: data -> two recognizers -> evaluation -> report."""

import json

import pytest

from tfface.errors import ConfigError
from tfface.experiments.demo import run_demo


@pytest.mark.slow
def test_quick_demo_writes_report(tmp_path, monkeypatch):
    monkeypatch.setenv("TFFACE_CACHE", str(tmp_path / "cache"))
    report = run_demo(tmp_path / "demo", quick=True, workers=1)
    text = report.read_text()
    assert "Identification with distractors" in text and "Cross-model" in text
    data = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert set(data["models"]) == {"old", "new"}
    for role in ("old", "new"):
        ident = data["evaluation"][role]["identification"]
        assert ident["num_distractors"] == 20 and 0.0 <= ident["rank_accuracy"]["1"] <= 1.0
        assert (tmp_path / "demo" / data["models"][role]["recipe"] / "embedder.keras").is_file()
    for png in ("roc.png", "cmc.png", "similarity.png", "faces.jpg"):
        assert (tmp_path / "demo" / png).stat().st_size > 1000
    assert len(data["cross_model"]["matrix"]) == 2
    for role in ("old", "new"):  # identification through the ScaNN index is reported next to the exact one
        ix = data["retrieval_index"][role]
        assert ix["database_size"] == 10 + 20 and 0.0 <= ix["rank_agreement"] <= 1.0
    assert "tfface.retrieval.Index" in text
    # the R3AN section: three translators evaluated, the translator exported and checked
    tr = data["translation"]
    assert set(tr["methods"]) == {"linear", "fc", "r3an"}
    assert all(0.0 <= m["probe_transform_top1"] <= 1.0 for m in tr["methods"].values())
    assert tr["export"]["check_ok"] and tr["export"]["onnx_max_abs_diff"] < 1e-4
    assert (tmp_path / "demo" / "export" / "translator" / "1" / "saved_model.pb").is_file()
    for png in ("reconstruction.png", "translation_projection.png"):
        assert (tmp_path / "demo" / png).stat().st_size > 1000
    assert "Feature translation old -> new (R3AN)" in text


def test_demo_recipe_missing(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        run_demo(tmp_path / "demo", quick=True, small_recipe=tmp_path / "none.yaml")
