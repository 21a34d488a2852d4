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
        ranks = ident["rank_accuracy"]
        # 10 test identities x 3 images: one gallery image each, the 2 others search
        assert ident["num_distractors"] == 20 and ident["num_searches"] == 20
        assert ranks["1"] <= ranks["5"] and ranks["1"] * 20 == pytest.approx(round(ranks["1"] * 20))
        assert (tmp_path / "demo" / data["models"][role]["recipe"] / "embedder.keras").is_file()
    for png in ("roc.png", "cmc.png", "similarity.png", "faces.jpg"):
        assert (tmp_path / "demo" / png).stat().st_size > 1000
    assert len(data["cross_model"]["matrix"]) == 2
    for role in ("old", "new"):  # identification through the ScaNN index is reported next to the exact one
        ix = data["retrieval_index"][role]
        # (no bound on rank_agreement here: the quick demo's one-epoch models give near-identical
        # embeddings, whose float ties ScaNN and exact search break differently; tests/test_retrieval_*
        # check agreement on separable features)
        assert ix["database_size"] == 10 + 20 and ix["rank_agreement"] is not None
    assert "tfface.retrieval.Index" in text
    # the R3AN section: three translators evaluated, the translator exported and checked
    tr = data["translation"]
    assert set(tr["methods"]) == {"linear", "fc", "r3an"}
    # the same protocol computed two ways agrees: the compatibility matrix's diagonal is each model's own
    # top-1, and its R3AN(old) -> new cell is R3AN's probe-transformation top-1
    compat = tr["compatibility"]
    assert compat["new"]["new"] == pytest.approx(tr["own_top1"]["new"])
    assert compat["old"]["old"] == pytest.approx(tr["own_top1"]["old"])
    assert compat["R3AN(old)"]["new"] == pytest.approx(tr["methods"]["r3an"]["probe_transform_top1"])
    assert tr["parameters"]["linear"] == 128 * 128 + 128  # the ridge map: one weight matrix and a bias
    assert tr["export"]["check_ok"] and tr["export"]["onnx_max_abs_diff"] < 1e-4
    assert (tmp_path / "demo" / "export" / "translator" / "1" / "saved_model.pb").is_file()
    for png in ("reconstruction.png", "translation_projection.png"):
        assert (tmp_path / "demo" / png).stat().st_size > 1000
    assert "Feature translation old -> new (R3AN)" in text
    ftl = data["ftl"]["metrics"]
    assert set(ftl) == {"pretrained", "sfmx_ml2", "ftl"} and "FTL: under-represented identities" in text
    assert all(0.0 <= m["top1/ur"] <= 1.0 and m["rho"] > 0 for m in ftl.values())


def test_demo_recipe_missing(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        run_demo(tmp_path / "demo", quick=True, small_recipe=tmp_path / "none.yaml")
