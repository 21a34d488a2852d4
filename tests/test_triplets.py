"""Rendered triplets for any two embedders (tfface.translation.triplets), the linear baseline's ridge
choice (select_ridge) and the ``source: rendered`` translator recipe."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfface.embed import Embedder
from tfface.errors import ConfigError, DataError
from tfface.methods.r3an import select_ridge
from tfface.translation.triplets import TripletSpec, aligned_for, rendered_triplets

SPEC = TripletSpec(num_identities=4, images_per_identity=2, render_size=64, chunk_identities=2)


def mean_rgb(name="mean-rgb"):
    return Embedder.from_callable(lambda x: x.mean(axis=(1, 2)) + 2.0, "tfface64", name=name, dim=3)


def grid(name="grid"):
    return Embedder.from_callable(lambda x: x[:, ::8, ::8, 0].reshape(len(x), -1) + 2.0, "tfface64", name=name, dim=64)


def save_tiny_models(folder):
    """Two tiny Keras "models" saved as ``old.keras`` (6-D) and ``new.keras`` (8-D): stand-ins for the user's."""
    import keras

    for name, dim in (("old", 6), ("new", 8)):
        inp = keras.Input((56, 56, 3))
        out = keras.layers.Dense(dim)(keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 5, strides=4)(inp)))
        keras.Model(inp, out).save(folder / f"{name}.keras")


def test_triplets_are_the_models_features_of_the_rendered_faces(tmp_path):
    pairs, info = rendered_triplets(mean_rgb(), grid(), SPEC, tmp_path / "t", progress=False)
    assert len(pairs) == 8 and pairs.source_dim == 3 and pairs.target_dim == 64
    assert pairs.faces.shape == (8, 56, 56, 3)
    assert sorted(set(pairs.labels.tolist())) == [0, 1, 2, 3]  # labels run across chunks
    # the features are the models' own on the renders (unit rows)
    from tfface.data.builtin import render_dataset

    data = render_dataset(SPEC.render_config(0, 2), use_cache=False, progress=False)
    np.testing.assert_allclose(pairs.source[:4], mean_rgb().embed(data.images), atol=1e-6)
    manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert manifest["old"]["name"] == "mean-rgb" and manifest["distribution"]["yaw"] == [-35.0, 35.0]
    assert info["computed_chunks"] == 2 and info["faces_per_second"] > 0


def test_an_interrupted_build_resumes_without_recomputing(tmp_path):
    first, _ = rendered_triplets(mean_rgb(), grid(), SPEC, tmp_path, progress=False)
    (tmp_path / "chunk-00001.npz").unlink()  # as if stopped before the second chunk
    calls = []
    counting = Embedder.from_callable(lambda x: calls.append(len(x)) or x.mean(axis=(1, 2)) + 2.0, "tfface64",
                                      name="mean-rgb", dim=3)
    again, info = rendered_triplets(counting, grid(), SPEC, tmp_path, progress=False)
    assert info["computed_chunks"] == 1 and info["reused_chunks"] == 1 and sum(calls) == 4
    np.testing.assert_array_equal(first.source, again.source)
    np.testing.assert_array_equal(first.faces, again.faces)


def test_a_cache_of_other_models_or_spec_is_refused_by_field(tmp_path):
    rendered_triplets(mean_rgb(), grid(), SPEC, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="another old"):
        rendered_triplets(mean_rgb("other"), grid(), SPEC, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="another spec"):
        rendered_triplets(mean_rgb(), grid(), SPEC.replace(distribution="wide"), tmp_path, progress=False)


def test_bad_models_and_settings_fail_with_the_model_named(tmp_path):
    nan = Embedder.from_callable(lambda x: np.full((len(x), 3), np.nan), "tfface64", name="broken", dim=3)
    with pytest.raises(DataError, match="old model 'broken' returned NaN"):
        rendered_triplets(nan, grid(), SPEC, tmp_path / "a", progress=False)
    assert not list((tmp_path / "a").glob("chunk-*"))  # nothing half-written
    with pytest.raises(ConfigError, match="new_alignment: unknown 'sphere'"):
        rendered_triplets(mean_rgb(), grid(), SPEC, tmp_path / "b", new_alignment="sphere", progress=False)
    with pytest.raises(ConfigError, match="triplets.distribution"):
        TripletSpec(distribution="night")
    with pytest.raises(ConfigError, match="triplets.render_size"):
        TripletSpec(render_size=100)


def test_each_model_gets_its_own_alignment():
    from tfface.data.alignment import align_face
    from tfface.data.builtin import render_dataset

    data = render_dataset(SPEC.render_config(0, 1).replace(image_size=112), use_cache=False, progress=False)
    assert aligned_for(data.images, data.landmarks5, "render") is data.images
    chips = aligned_for(data.images, data.landmarks5, "dlib150")
    assert chips.shape == (2, 150, 150, 3)
    np.testing.assert_array_equal(chips[1], align_face(data.images[1], data.landmarks5[1], "dlib150"))
    assert aligned_for(data.images, data.landmarks5, "arcface112x96").shape == (2, 112, 96, 3)


def test_select_ridge_shrinks_only_when_it_helps_held_out_identities():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 8))
    x = rng.normal(size=(600, 16))
    clean = select_ridge(x, x @ w, np.arange(600) // 6)
    assert clean["ridge"] == min(clean["grid"])  # exact linear data: no shrinkage
    xs = rng.normal(size=(40, 16))  # few rows, heavy noise: shrinkage pays on held-out identities
    noisy = select_ridge(xs, xs @ w + 8.0 * rng.normal(size=(40, 8)), np.arange(40) // 2)
    assert noisy["ridge"] > 1e-3
    assert noisy["scores"][noisy["grid"].index(noisy["ridge"])] == max(noisy["scores"])
    with pytest.raises(ConfigError, match="folds"):
        select_ridge(xs, xs @ w, np.zeros(40), folds=5)


def test_a_rendered_translator_recipe_selects_exports_and_reports(tmp_path):

    from tfface.experiments.recipes import load_experiment

    save_tiny_models(tmp_path)
    recipe_path = tmp_path / "translator_tiny.yaml"
    recipe_path.write_text(f"""
name: translator_tiny
method: r3an
variant: [linear, fc]
data:
  source: rendered
  old: {tmp_path / 'old.keras'}
  old_preprocessing: tfface56
  new: {tmp_path / 'new.keras'}
  new_preprocessing: tfface56
  new_alignment: arcface112
  triplets: {{num_identities: 20, images_per_identity: 3, render_size: 64, chunk_identities: 10}}
translator: {{preset: cpu, fc_hidden: 16}}
train: {{epochs: 1, batch_size: 16}}
eval: {{identities: 5, images_per_identity: 2, distractors: 10}}
export: true
output_dir: {tmp_path / 'run'}
""")
    method, recipe, _ = load_experiment(recipe_path)
    report = method.run(recipe, verbose=0)
    assert report["variant"] in ("linear", "fc") and set(report["selection"]["scores"]) == {"linear", "fc"}
    assert report["variant"] == max(report["selection"]["scores"],
                                    key=lambda v: report["selection"]["scores"][v]["held_out_mean_cosine"])
    assert report["triplets"] == 60 and report["export"]["check_ok"]
    assert set(report["own_top1"]) == {"old", "new"} and report["untranslated_top1"] is None  # 6-D vs 8-D
    assert 0.0 <= report["metrics"]["probe_transform_top1"] <= 1.0
    # the export upgrades a stored old gallery directly
    from tfface.cli import main
    from tfface.retrieval import Index

    Index.build(np.random.default_rng(0).normal(size=(50, 6)).astype("float32"), backend="exact").save(
        tmp_path / "old_index")
    assert main(["upgrade-gallery", "--translator", str(tmp_path / "run" / "export" / "translator"),
                 "--index", str(tmp_path / "old_index"), "--out", str(tmp_path / "new_index"), "--no-progress"]) == 0
    assert Index.load(tmp_path / "new_index").dim == 8
    bad = recipe_path.read_text().replace("new_preprocessing: tfface56", "new_preprocessing: null")
    recipe_path.write_text(bad)
    method, recipe, _ = load_experiment(recipe_path)
    with pytest.raises(ConfigError, match="data.new_preprocessing: required"):
        method.run(recipe, verbose=0)


def test_the_users_real_faces_mix_with_the_renders_at_their_weight(tmp_path):
    """``data.real``: photographs in identity folders, landmarks by dlib, each model's own template,
    training identities repeated ``weight`` times beside the renders, held-out ones measured."""
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    from PIL import Image

    from tfface.data.builtin import render_dataset
    from tfface.data.synthetic import FaceDataConfig
    from tfface.experiments.recipes import load_experiment
    from tfface.translation.real_triplets import real_triplets

    faces = render_dataset(FaceDataConfig(num_identities=4, images_per_identity=3, image_size=112,
                                          identity_offset=900_000), use_cache=False, progress=False)
    for i, (im, lab) in enumerate(zip(faces.images, faces.labels, strict=True)):
        (tmp_path / "photos" / f"person{lab}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(tmp_path / "photos" / f"person{lab}" / f"{i}.png")
    old, new = mean_rgb(), grid()
    pairs, info = real_triplets(old, new, tmp_path / "photos", tmp_path / "cache", "arcface112", "dlib150",
                                progress=False)
    assert len(pairs) == 12 and info["identities"] == 4 and pairs.faces.shape == (12, 56, 56, 3)
    again, _ = real_triplets(old, new, tmp_path / "photos", tmp_path / "cache", "arcface112", "dlib150",
                             progress=False)  # from the cache
    np.testing.assert_array_equal(again.source, pairs.source)
    with pytest.raises(ConfigError, match="cannot align a real photograph"):
        real_triplets(old, new, tmp_path / "photos", tmp_path / "cache", "render", "dlib150", progress=False)
    with pytest.raises(DataError, match="data.real.path"):
        real_triplets(old, new, tmp_path / "nowhere", tmp_path / "cache", "arcface112", "dlib150", progress=False)

    save_tiny_models(tmp_path)
    recipe_path = tmp_path / "translator_real.yaml"
    recipe_path.write_text(f"""
name: translator_real
method: r3an
variant: linear
data:
  source: rendered
  old: old.keras
  old_preprocessing: tfface56
  old_alignment: arcface112
  new: new.keras
  new_preprocessing: tfface56
  new_alignment: arcface112
  triplets: {{num_identities: 10, images_per_identity: 2, render_size: 64, chunk_identities: 10}}
  real: {{path: photos, weight: 3, test_fraction: 0.5}}
train: {{epochs: 1, batch_size: 8}}
eval: {{identities: 4, images_per_identity: 2, distractors: 6}}
export: false
output_dir: {tmp_path / 'run'}
""")
    method, recipe, _ = load_experiment(recipe_path)  # data.real.path resolves beside the recipe
    report = method.run(recipe, verbose=0)
    real = report["data"]["real"]
    assert real["train_pairs"] == 6 and real["test_pairs"] == 6 and real["weight"] == 3
    assert report["triplets"] == 20 + 3 * 6  # the renders plus three copies of the real training pairs
    assert report["real_faces"]["identities"] == 2 and 0.0 <= report["real_faces"]["translated_rank1"] <= 1.0
    with pytest.raises(ConfigError, match="data.old_alignment: 'render' cannot align"):
        load_experiment(recipe_path, overrides=["data.old_alignment=render"])
