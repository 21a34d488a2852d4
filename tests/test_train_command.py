"""``tfface train RECIPE`` for every method: recipes by path or packaged name, overrides that go through the
recipe (``--epochs`` changes the schedule and the record), relative paths, reuse of trained models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfface.cli import main
from tfface.errors import ConfigError
from tfface.experiments.recipes import apply_override, load_experiment, packaged_recipes
from tfface.experiments.registry import METHODS

TINY = """name: {name}
method: recognizer
data: {{builtin: {{num_identities: 4, images_per_identity: 4, image_size: 56}}}}
model: {{backbone: mobilenet_v2, backbone_kwargs: {{width: 0.25, last_channels: 32, blocks: [[16, 1, 2]]}},
        embedding_dim: 16}}
train: {{epochs: 4, batch_size: 8, optimizer: sgd, learning_rate: 0.1, warmup_epochs: 0.0, augment: false}}
"""


def test_every_packaged_recipe_loads_strictly_with_its_method():
    names = packaged_recipes()
    assert {"recognizer_small", "recognizer_large", "ddl_resolution", "ddl_pose", "r3an_builtin", "r3an_fc",
            "r3an_linear"} <= set(names)
    for name in names:
        method, recipe, path = load_experiment(name)
        assert method.name in METHODS and recipe.method == method.name and path.stem == name
        assert isinstance(recipe, method.recipe_class())


def test_overrides_go_through_the_recipe_and_errors_name_the_key(tmp_path):
    method, recipe, _ = load_experiment("recognizer_small", overrides=["train.learning_rate=0.05",
                                                                        "model.margin_kwargs={s: 32.0}"], epochs=3)
    assert (recipe.train.epochs, recipe.train.learning_rate, recipe.model.margin_kwargs) == (3, 0.05, {"s": 32.0})
    _, r3an, _ = load_experiment("r3an_builtin", overrides=["variant=arch3"])
    assert r3an.variant == "arch3" and r3an.translator_config(8, 8).flags == (False, False, False, True)
    with pytest.raises(ConfigError, match=r"recognizer_small.yaml: unknown key train.learnin_rate"):
        load_experiment("recognizer_small", overrides=["train.learnin_rate=0.1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_override({}, "train.epochs")
    with pytest.raises(ConfigError, match="method"):
        load_experiment("recognizer_small", overrides=["method=ddl"])
    with pytest.raises(ConfigError, match="recipe not found"):
        load_experiment(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    with pytest.raises(ConfigError, match="no 'method:' key"):
        load_experiment(bad)
    bad.write_text("name: x\nmethod: wsgann\n")
    with pytest.raises(ConfigError, match="unknown method 'wsgann'"):
        load_experiment(bad)


def test_paths_inside_a_recipe_resolve_relative_to_the_recipe_file(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "old.yaml").write_text(TINY.format(name="old"))
    (tmp_path / "sub" / "r3an.yaml").write_text("name: t\nmethod: r3an\ndata: {old: old.yaml, new: old.yaml}\n")
    monkeypatch.chdir(tmp_path)
    _, recipe, _ = load_experiment("sub/r3an.yaml", overrides=["data.new=sub/old.yaml"])
    assert recipe.data.old == str(tmp_path / "sub" / "old.yaml")
    assert recipe.data.new == "sub/old.yaml"  # a command-line path stays relative to the working folder
    # the packaged DDL recipes name their pretrained recognizer relative to themselves
    _, ddl, path = load_experiment("ddl_resolution")
    assert ddl.pretrained.recipe == str(path.parent / "recognizer_small.yaml")


@pytest.mark.slow
def test_epochs_override_changes_the_schedule_and_the_record(tmp_path, monkeypatch):
    """The bug this guards: ``--epochs`` used to shorten the fit but not the cosine schedule (built from the
    recipe's epochs), and history.json recorded the unchanged recipe."""
    from tfface.training.recognizer import load_training_data, train_recognizer

    monkeypatch.setenv("TFFACE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "tiny.yaml").write_text(TINY.format(name="tiny"))
    _, recipe, _ = load_experiment(tmp_path / "tiny.yaml", epochs=1)
    images, labels = load_training_data(recipe, progress=False)
    res = train_recognizer(recipe, images, labels, out_dir=tmp_path / "run", verbose=0, callbacks=False)
    opt = res.model.optimizer
    steps = len(labels) // recipe.train.batch_size
    assert int(opt.iterations) == steps
    # the cosine decay ran to its end (1% of the rate) within the one epoch trained
    assert float(opt.learning_rate) == pytest.approx(0.01 * recipe.train.learning_rate, rel=1e-3)
    record = json.loads((tmp_path / "run" / "history.json").read_text())
    assert record["recipe"]["train"]["epochs"] == 1 and len(record["history"]["train"]["loss"]) == 1

    # the same through the command line, which also reuses nothing stale
    assert main(["train", str(tmp_path / "tiny.yaml"), "--epochs", "2", "--out", str(tmp_path / "cli")]) == 0
    record = json.loads((tmp_path / "cli" / "history.json").read_text())
    assert record["recipe"]["train"]["epochs"] == 2 and len(record["history"]["train"]["loss"]) == 2


@pytest.mark.slow
def test_r3an_recipe_trains_its_baselines_and_reuses_recorded_models(tmp_path, monkeypatch):
    from tfface.experiments.train_recognizer import embedder_for

    monkeypatch.setenv("TFFACE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.yaml").write_text(TINY.format(name="old") + "eval: {identities: 4, images_per_identity: 3, "
                                                                 "distractors: 6, pairs: 10}\n")
    (tmp_path / "r3an.yaml").write_text(
        "name: t_r3an\nmethod: r3an\nvariant: linear\ndata: {old: old.yaml, new: old.yaml}\nexport: false\n")
    assert main(["train", "r3an.yaml", "--epochs", "1"]) == 0  # trains runs/old once, then the ridge map
    report = json.loads((tmp_path / "runs" / "t_r3an" / "report.json").read_text())
    assert report["variant"] == "linear" and report["triplets"] == 16
    # old == new: the least-squares map is (near) the identity, so translation matches the model's own top-1
    assert report["metrics"]["mean_cosine"] > 0.99
    assert report["metrics"]["probe_transform_top1"] == pytest.approx(report["own_top1"]["new"], abs=0.1)
    stamp = (tmp_path / "runs" / "old" / "embedder.keras").stat().st_mtime_ns
    assert main(["train", "r3an.yaml", "--set", "variant=fc", "--set", "translator.width=0.25",
                 "--set", "train.batch_size=8", "--epochs", "1", "--out", "runs/t_fc"]) == 0
    assert (tmp_path / "runs" / "old" / "embedder.keras").stat().st_mtime_ns == stamp  # reused, not retrained
    record = json.loads((tmp_path / "runs" / "t_fc" / "history.json").read_text())
    assert record["recipe"]["variant"] == "fc" and record["recipe"]["train"]["epochs"] == 1
    assert np.isfinite(record["history"]["train"]["loss_reg"]).all()
    # a model trained from another recipe is never silently reused
    (tmp_path / "old.yaml").write_text(TINY.format(name="old").replace("learning_rate: 0.1", "learning_rate: 0.2"))
    with pytest.raises(ConfigError, match=r"train.learning_rate: 0.1 recorded, 0.2 asked"):
        embedder_for(str(tmp_path / "old.yaml"), fallback_dir=tmp_path / "runs" / "old")


@pytest.mark.parametrize("override, message", [
    ("train.epochs=100000000", r"recognizer_small.yaml: train.epochs: must be >= 1 and <= 100000"),
    ("train.epochs=1e29", r"recognizer_small.yaml: train.epochs: expected an integer, got '1e29'"),
    ("data.builtin.num_identities=1000000000000", r"data.builtin.num_identities: must be >= 1 and <= 1e\+07"),
    ("data.builtin={num_identities: 1000000, images_per_identity: 100, image_size: 64}",
     r"num_identities x images_per_identity: 100,000,000 images"),
    ("model.embedding_dim=-5", r"model.embedding_dim: must be >= 1"),
    ("model.backbone=resnet9000", r"model.backbone: unknown 'resnet9000'"),
    ("model.backbone_kwargs={width: -1}", r"recognizer_small.yaml: model.backbone_kwargs.width: must be > 0"),
    ("train.learning_rate=0", r"train.learning_rate: must be > 0"),
])
def test_recipe_bounds_name_the_file_and_the_dotted_key_before_any_work(override, message, monkeypatch):
    import tfface.data.builtin as builtin

    def no_render(*a, **k):
        raise AssertionError("rendered before the recipe was validated")

    monkeypatch.setattr(builtin, "render_dataset", no_render)
    with pytest.raises(ConfigError, match=message):
        load_experiment("recognizer_small", overrides=[override], check=True)


def test_cli_train_bad_recipe_is_one_line_exit_2(capsys):
    assert main(["train", "recognizer_small", "--set", "model.embedding_dim=-5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "recognizer_small.yaml: model.embedding_dim" in err[0]


def test_cli_train_refuses_a_bad_recipe_before_rendering_anything(monkeypatch, capsys):
    import tfface.data.builtin as builtin

    def no_render(*a, **k):
        raise AssertionError("rendered before the recipe was checked")

    monkeypatch.setattr(builtin, "render_dataset", no_render)
    for bad in ("model.embedding_dim=-5", "train.epochs=1e29", "data.builtin.num_identities=1e12",
                "model.backbone_kwargs={width: -3}"):
        assert main(["train", "recognizer_small", "--set", bad]) == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "recognizer_small.yaml" in err[0] and bad.split("=")[0].split(".")[0] in err[0], err
