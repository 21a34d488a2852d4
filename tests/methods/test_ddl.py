"""DDL fine-tuning: hard-sample splits and batches, a tiny fit, 1 vs 2 replica parity, bad input."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfface.errors import ConfigError, DataError
from tfface.methods.ddl import DDLHistogramCallback, build_ddl
from tfface.methods.ddl.data import (
    DDLBatchBuilder,
    SampleSet,
    check_ddl_batch,
    downsample,
    load_attribute_file,
    pose_split,
    resolution_split,
)
from tfface.methods.recognizer import build_recognizer

SIZE = 32


def _faces(n_ids=8, per_id=6, seed=0):
    """Images with a per-identity colour pattern (so identities differ) plus noise."""
    rng = np.random.default_rng(seed)
    proto = rng.integers(0, 255, (n_ids, 4, 4, 3)).astype(np.float32)
    base = np.kron(proto, np.ones((1, SIZE // 4, SIZE // 4, 1), np.float32))
    labels = np.repeat(np.arange(n_ids), per_id)
    imgs = base[labels] + rng.normal(0, 20, (len(labels), SIZE, SIZE, 3))
    return np.clip(imgs, 0, 255).astype(np.uint8), labels


def _embedder(seed=0):
    keras.utils.set_random_seed(seed)
    rec = build_recognizer("mobilenet_v2", (SIZE, SIZE, 3), embedding_dim=16, num_classes=4,
                           backbone_kwargs={"width": 0.25, "last_channels": 32, "blocks": [[16, 1, 2], [24, 1, 2]]})
    return rec.embedding_model()


def test_splits_downsample_and_batches(tmp_path):
    imgs, labels = _faces()
    low = downsample(imgs, 4)
    assert low.shape == imgs.shape and low.dtype == np.uint8
    assert np.abs(np.diff(low.astype(float), axis=1)).mean() < np.abs(np.diff(imgs.astype(float), axis=1)).mean()
    easy, hard = resolution_split(imgs, labels, factors=(8, 4))
    assert [h.name for h in hard] == ["x8", "x4"] and (hard[0].source == easy.source).all()
    yaw = np.tile([0.0, 5.0, -8.0, 50.0, -60.0, 30.0], 8)
    e, (p,) = pose_split(imgs, labels, yaw)
    assert len(e) == 24 and len(p) == 16 and p.name == "pose"
    builder = DDLBatchBuilder(easy, hard, b=4, seed=1)
    idx = builder.draw(5)
    assert idx["identities"].shape == (5, 4, 3)
    # an easy-hard pair never joins an image with its own downsampled copy
    src = np.concatenate([easy.source, hard[0].source, hard[1].source])
    assert (src[idx["pair_a"]] != src[idx["pair_b"]]).all()
    x, y = next(iter(builder.dataset(2)))
    assert x["pair_b"].shape == (4, 3, SIZE, SIZE, 3) and y["pairs"].shape == (4, 3)
    assert float(tf.reduce_max(x["identities"])) <= 1.0 and float(tf.reduce_min(x["identities"])) >= -1.0
    # per-image attribute file for real data
    f = tmp_path / "attrs.csv"
    f.write_text("path,yaw\na/1.jpg,12.5\na/2.jpg,-50\n")
    out = load_attribute_file(f, [tmp_path / "a/2.jpg", tmp_path / "a/1.jpg"], root=tmp_path)
    assert out["yaw"].tolist() == [-50.0, 12.5]
    with pytest.raises(DataError, match="a/3.jpg"):
        load_attribute_file(f, ["a/3.jpg"])


def test_bad_input_is_caught_before_training():
    imgs, labels = _faces()
    easy, hard = resolution_split(imgs, labels, factors=(4,))
    # an empty hard subset
    with pytest.raises(DataError, match="pose: the subset is empty"):
        pose_split(imgs, labels, np.zeros(len(labels)))
    # a branch whose identity has one image where a positive pair (hard-hard) is needed
    one = np.concatenate([np.flatnonzero(labels != 3), np.flatnonzero(labels == 3)[:1]])
    lonely = hard[0].subset(one, name="x4")
    with pytest.raises(DataError, match="x4: identity 3 has 1 image"):
        DDLBatchBuilder(easy, [lonely], b=4, student_pairs="hard-hard")
    # negatives must be b distinct identities: too few identities, or a batch that repeats one
    with pytest.raises(DataError, match="x4: 3 identities, fewer than b=4"):
        DDLBatchBuilder(easy, [hard[0].subset(labels < 3)], b=4)
    bad = np.array([[0, 1], [2, 1], [3, 5]])
    with pytest.raises(DataError, match="student_1: the negatives are not distinct identities"):
        check_ddl_batch(bad)
    with pytest.raises(ConfigError, match="b: pairs per distribution"):
        DDLBatchBuilder(easy, hard, b=1)
    with pytest.raises(ConfigError, match="bins"):
        build_ddl(_embedder(), 8, loss={"bins": 1})
    with pytest.raises(ConfigError, match="loss.lambda_2"):
        build_ddl(_embedder(), 8, loss={"lambda_2": -1.0})
    with pytest.raises(DataError, match="the subset is empty"):
        SampleSet("x8", imgs[:0], labels[:0], labels[:0])


def test_tiny_fit_logs_parts_and_histograms(tmp_path):
    imgs, labels = _faces()
    easy, hard = resolution_split(imgs, labels, factors=(8, 4))
    builder = DDLBatchBuilder(easy, hard, b=4, seed=0)
    model = build_ddl(_embedder(), builder.num_classes, num_students=2, loss={"bins": 201},
                      margin_kwargs={"s": 16.0, "m": 0.3})
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    batch, _ = next(iter(builder.dataset(1, seed=9)))
    cb = DDLHistogramCallback(batch, str(tmp_path / "tb"), names=builder.names)
    hist = model.fit(builder.dataset(3), epochs=1, verbose=0, callbacks=[cb])
    h = hist.history
    assert {"loss", "cls", "ddl", "kl_pos", "order", "teacher_pos_mean", "student_2_overlap"} <= set(h)
    assert np.isfinite(h["loss"][0]) and abs(h["loss"][0] - h["cls"][0] - h["ddl"][0]) < 1e-4
    assert list((tmp_path / "tb" / "distributions").glob("events.out.tfevents*"))
    wrong = build_ddl(_embedder(), builder.num_classes, num_students=1, loss={"bins": 201})
    wrong.compile(optimizer="sgd")
    with pytest.raises(ConfigError, match="num_students"):
        wrong.fit(builder.dataset(1), verbose=0)


def test_two_replicas_match_one_device_on_the_same_global_batch(two_cpu_strategy, tmp_path):
    from method_test_case import run_config_round_trip, run_deployable_parity, run_replica_parity

    imgs, labels = _faces()
    easy, hard = resolution_split(imgs, labels, factors=(8, 4))
    builder = DDLBatchBuilder(easy, hard, b=4, seed=0)
    embedder = _embedder()
    head = []

    def build():
        model = build_ddl(embedder, builder.num_classes, num_students=2, sync_batchnorm=True,
                          loss={"bins": 201, "negative_mining": "random"}, margin_kwargs={"s": 16.0, "m": 0.3})
        if not head:
            head.append(model.margin.kernel.numpy())
        model.margin.kernel.assign(head[0])
        model.compile(optimizer=keras.optimizers.SGD(0.05))
        return model

    logs = run_replica_parity(build, lambda: builder.dataset(1, flip=False), two_cpu_strategy)
    assert {"loss", "ddl"} <= set(logs) or len(logs) > 1
    run_config_round_trip(build())
    run_deployable_parity(build().embedder, imgs[:4], tmp_path)  # DDL deploys its fine-tuned embedder


def test_recipe_runs_end_to_end_with_strict_config(tmp_path):
    from tfface.experiments.recipes import load_experiment
    from tfface.methods.ddl.config import load_ddl_recipe

    embedder_path = tmp_path / "embedder.keras"
    rec = build_recognizer("mobilenet_v2", (56, 56, 3), embedding_dim=16, num_classes=4,
                           backbone_kwargs={"width": 0.25, "last_channels": 32, "blocks": [[16, 1, 2], [24, 1, 2]]})
    rec.embedding_model().save(embedder_path)
    recipe = tmp_path / "ddl.yaml"
    recipe.write_text(f"""
name: tiny_ddl
method: ddl
pretrained: {{embedder: {embedder_path}, recipe: null}}
data:
  builtin: {{num_identities: 6, images_per_identity: 4, image_size: 56, identity_offset: 50000}}
  split: {{kind: resolution, factors: [8]}}
loss: {{bins: 201}}
train: {{b: 4, steps: 2, epochs: 1}}
eval: {{identities: 4, images_per_identity: 3, distractors: 4}}
""")
    method, loaded, _ = load_experiment(recipe)
    report = method.run(loaded, out_dir=tmp_path / "out")
    record = json.loads((tmp_path / "out" / "history.json").read_text())
    assert record["recipe"]["train"]["steps"] == 2 and len(record["history"]["finetune"]["loss"]) == 1
    assert set(report["eval"]["finetuned"]) == {"easy", "x8"}
    assert {"tar@far=0.01", "rank1", "overlap", "margin", "gap"} <= set(report["eval"]["finetuned"]["x8"])
    assert (tmp_path / "out" / "embedder.keras").is_file() and (tmp_path / "out" / "histograms.png").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss: {bins: 1}\n")
    with pytest.raises(ConfigError, match="loss.bins"):
        load_ddl_recipe(bad)
    bad.write_text("train: {b: 4, stepz: 3}\n")
    with pytest.raises(ConfigError, match="train.stepz"):
        load_ddl_recipe(bad)
