"""R3AN: Algorithm 1's steps, the Table-3 switches, the schedule, MirroredStrategy, the baselines, export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfface.embed import Embedder
from tfface.errors import ConfigError, DataError
from tfface.methods.adversarial import discriminator_loss
from tfface.methods.r3an import R3AN, VARIANTS, R3ANConfig, fit_linear_translator
from tfface.methods.r3an.data import PairedFeatures, build_pairs, load_pairs
from tfface.methods.r3an.evaluation import (
    compatibility_matrix,
    cross_top1,
    error_reduction,
    evaluate_translator,
)
from tfface.training.r3an import r3an_optimizers, reconstruction_grid, train_translator

D = 16


def _cfg(**kw):
    base = dict(source_dim=D, target_dim=D, width=0.125, expansion=2, seed=0)
    base.update(kw)
    return R3ANConfig(**base)


def _batch(rng, n=8):
    x = rng.normal(size=(n, D)).astype("float32")
    y = rng.normal(size=(n, D)).astype("float32")
    img = rng.uniform(-1, 1, (n, 56, 56, 3)).astype("float32")
    return x, img, y


def _weights(m):
    return None if m is None else [w.numpy().copy() for w in m.trainable_weights]


def _changed(before, model):
    if before is None:
        return None
    return any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights, strict=True))


@pytest.mark.parametrize("variant", ["arch1", "arch3", "arch6", "r3an"])
def test_variant_switches_select_the_updated_networks(variant, rng):
    model = R3AN(_cfg(variant=variant, learning_rate=0.01))
    model.compile(**r3an_optimizers(model, total_steps=10))
    x, img, y = _batch(rng)
    g, e, d = _weights(model.G), _weights(model.E), _weights(model.D)
    logs = model.train_on_batch((x, img), y, return_dict=True)
    use_adv, use_rec, use_rep, use_reg = VARIANTS[variant]
    assert _changed(g, model.G) == (use_adv or use_rec or use_reg)
    assert _changed(e, model.E) == (use_rep or use_reg)
    assert (model.D is not None) == use_adv and (not use_adv or _changed(d, model.D))
    expected = {f"loss_{k}" for k, on in (("d", use_adv), ("adv", use_adv), ("rec", use_rec), ("rep", use_rep),
                                          ("reg", use_reg)) if on}
    assert set(logs) == expected and all(np.isfinite(v) for v in logs.values())


def test_d_step_lowers_d_loss_and_g_step_raises_d_of_fake(rng):
    """Guards the sign slips of Eqs. 5/6 (spec A8): D descends on BCE(real->1, fake->0); G's adversarial
    step (non-saturating) makes D(G(X)) larger while D is held fixed."""
    model = R3AN(_cfg(variant="arch2", learning_rate=0.002, lambda_adv=1.0, weight_decay=0.0))
    model.compile(**r3an_optimizers(model, total_steps=10))
    x, img, _ = _batch(rng, 16)
    xn = tf.math.l2_normalize(x, -1)

    def d_loss():
        fake = model.G(xn, training=True)  # batch statistics, as in the step
        return float(tf.reduce_mean(discriminator_loss(model.D(img, training=True), model.D(fake, training=True))))

    before = d_loss()
    for _ in range(5):
        model.d_step(xn, img)
    assert d_loss() < before
    d_fake = lambda: float(tf.reduce_mean(tf.sigmoid(model.D(model.G(xn, training=True), training=True))))  # noqa
    d_before, dw = d_fake(), _weights(model.D)
    for _ in range(5):
        model.g_step(xn, img)
    assert d_fake() > d_before
    assert not _changed(dw, model.D)


def test_learning_rate_follows_batches_not_applications(rng):
    """G's and E's optimizers apply twice per batch in the full R3AN; the schedule still counts batches."""
    model = R3AN(_cfg(variant="r3an", learning_rate=0.08))
    model.compile(**r3an_optimizers(model, total_steps=10))  # boundaries 3, 5, 7 batches
    x, img, y = _batch(rng, 8)
    assert model.learning_rates() == pytest.approx({k: 0.08 for k in ("g_optimizer", "e_optimizer", "d_optimizer")})
    for _ in range(4):
        model.train_on_batch((x[:4], img[:4]), y[:4])
    assert int(model.g_optimizer.iterations) == 8 and int(model.d_optimizer.iterations) == 4
    rates = model.learning_rates()
    assert rates == pytest.approx({k: 0.008 for k in rates}, rel=1e-5)
    for _ in range(2):
        model.train_on_batch((x[:4], img[:4]), y[:4])
    assert model.learning_rates()["e_optimizer"] == pytest.approx(0.0008, rel=1e-5)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="variant"):
        R3ANConfig(variant="arch9")
    with pytest.raises(ConfigError, match="adv_loss"):
        R3ANConfig(adv_loss="wasserstein")
    with pytest.raises(ConfigError, match="lr_boundaries"):
        R3ANConfig(lr_boundaries=(0.5, 0.3))
    with pytest.raises(ConfigError, match="lambda_adv"):
        R3ANConfig(lambda_adv=-1.0)


def test_fc_baseline_matches_parameters_of_g_plus_e():
    cfg = _cfg(variant="fc")
    fc = R3AN(cfg)
    ge = R3AN(_cfg(variant="arch3"))
    count = lambda ms: sum(int(np.prod(w.shape)) for m in ms for w in m.trainable_weights)  # noqa: E731
    assert abs(count([fc.mlp]) - count([ge.G, ge.E])) / count([ge.G, ge.E]) < 0.02


def test_mirrored_strategy_trains_and_logs_global_losses(two_cpu_strategy, rng, tmp_path):
    x, img, y = _batch(rng, 16)

    def dataset():  # the GLOBAL batch is 16 for both (8 per replica under 2)
        return tf.data.Dataset.from_tensor_slices(((x, img), y)).batch(16)

    from method_test_case import run_config_round_trip, run_deployable_parity, run_replica_parity

    built = []

    def build():
        model = R3AN(_cfg(variant="r3an", learning_rate=0.01))
        model.compile(**r3an_optimizers(model, total_steps=4))
        built.append(model)
        return model

    # inference-mode losses (G, E and D keep per-replica BatchNorm statistics in training, so only
    # evaluation is compared exactly): 2 replicas log what 1 device computes
    run_replica_parity(build, dataset, two_cpu_strategy, fit=False, rtol=1e-5)
    two = built[1]
    e2 = two.evaluate(dataset(), verbose=0, return_dict=True)["loss_reg"]
    run_config_round_trip(built[0])
    run_deployable_parity(built[0].translator(), x[:4], tmp_path)
    hist = two.fit(dataset(), epochs=2, verbose=0, shuffle=False)
    assert set(hist.history) == {"loss_d", "loss_adv", "loss_rec", "loss_rep", "loss_reg"}
    assert all(np.isfinite(v).all() for v in hist.history.values())
    assert two.evaluate(dataset(), verbose=0, return_dict=True)["loss_reg"] != pytest.approx(e2)  # it trained


def test_translator_names_and_unit_outputs(rng):
    model = R3AN(_cfg())
    tr = model.translator()
    assert tr.input.name.startswith("source_features") or tr.inputs[0].name == "source_features"
    assert tr.layers[-1].name == "target_features"
    out = tr(rng.normal(size=(3, D)).astype("float32")).numpy()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_linear_translator_recovers_a_linear_map(rng):
    x = rng.normal(size=(400, D))
    w = np.linalg.qr(rng.normal(size=(D, D)))[0]  # orthogonal: unit rows stay unit, so Y is linear in X
    tr = fit_linear_translator(x, (x / np.linalg.norm(x, axis=1, keepdims=True)) @ w, ridge=1e-12)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    target = xn @ w
    target /= np.linalg.norm(target, axis=1, keepdims=True)
    np.testing.assert_allclose(tr(x.astype("float32")).numpy(), target, atol=1e-3)
    with pytest.raises(DataError, match="NaN"):
        fit_linear_translator(np.full((3, D), np.nan), np.ones((3, D)))


def test_train_translator_writes_logs_and_stops_on_divergence(tmp_path, rng):
    n = 16
    pairs = PairedFeatures(rng.integers(0, 255, (n, 56, 56, 3), dtype=np.uint8),
                           rng.normal(size=(n, D)).astype("float32"), rng.normal(size=(n, D)).astype("float32"),
                           np.arange(n) // 2)
    res = train_translator(_cfg(variant="r3an", learning_rate=0.01), pairs, epochs=1, batch_size=8, out_dir=tmp_path)
    assert (tmp_path / "translator.keras").is_file() and (tmp_path / "history.json").is_file()
    assert list((tmp_path / "tensorboard").rglob("*.v2"))
    loaded = keras.models.load_model(tmp_path / "translator.keras", safe_mode=True)
    np.testing.assert_allclose(loaded(pairs.source).numpy(), res.translator(pairs.source).numpy(), atol=1e-5)
    grid = reconstruction_grid(res.model, pairs, n=4)
    assert grid.shape == (8, 56, 56, 3)
    np.testing.assert_allclose(grid[0], pairs.faces[0] / 127.5 - 1.0, atol=1e-6)
    with pytest.raises(DataError, match="diverged"):
        train_translator(_cfg(variant="fc", learning_rate=1e6, fc_hidden=8, weight_decay=0.0,
                              feature_loss="sqdist"), pairs, epochs=3, batch_size=8)
    with pytest.raises(DataError, match="expects 8 -> 8"):
        train_translator(_cfg(variant="fc", source_dim=8, target_dim=8), pairs, epochs=1, batch_size=8)


def test_build_pairs_cache_round_trip(tmp_path, rng):
    images = rng.integers(0, 255, (6, 64, 64, 3), dtype=np.uint8)
    src = Embedder.from_callable(lambda b: b.reshape(len(b), -1)[:, :D], "tfface64", dim=D)
    tgt = Embedder.from_callable(lambda b: b.reshape(len(b), -1)[:, D:2 * D] * 2, "tfface64", dim=D)
    p = build_pairs(images, np.arange(6) // 2, src, tgt, cache=tmp_path / "pairs.npz")
    assert p.faces.shape == (6, 56, 56, 3) and p.faces.dtype == np.uint8
    np.testing.assert_allclose(np.linalg.norm(p.target, axis=1), 1.0, rtol=1e-5)
    q = load_pairs(tmp_path / "pairs.npz")
    np.testing.assert_array_equal(p.source, q.source)
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(DataError, match="bad.npz"):
        load_pairs(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="labels"):
        PairedFeatures(p.faces, p.source, p.target, np.arange(5))


def test_cross_top1_on_a_hand_made_gallery():
    e = np.eye(3, dtype=np.float32)
    probe = np.array([e[0], e[0] + 0.1 * e[1], e[1], e[1]])
    labels = np.array([0, 0, 1, 1])
    distract = np.array([e[2] + 0.5 * e[0]])  # cos with e0 ~ 0.447
    # identity 0: pair (0, 1): s ~ 0.995 > 0.447 hit; (1, 0) hit. identity 1: both hits (distractor cos 0)
    assert cross_top1(probe, probe, labels, distract) == 1.0
    gallery = np.array([e[2], e[2], e[1], e[1]])  # identity 0's gallery images point elsewhere
    assert cross_top1(probe, gallery, labels, distract) == 0.5
    m = compatibility_matrix({"a": probe, "b": gallery}, {"a": distract, "b": distract}, labels)
    assert m["a"]["a"] == 1.0 and m["a"]["b"] == 0.5
    assert error_reduction(0.95, 0.80) == pytest.approx(0.75)
    ev = evaluate_translator(lambda v: v, probe, probe, labels, distract, distract)
    assert ev["probe_transform_top1"] == 1.0 and ev["mean_cosine"] == pytest.approx(1.0)


def test_batch_norm_recalibration_matches_generated_face_statistics(rng):
    n = 32
    pairs = PairedFeatures(rng.integers(0, 255, (n, 56, 56, 3), dtype=np.uint8),
                           rng.normal(size=(n, D)).astype("float32"), rng.normal(size=(n, D)).astype("float32"),
                           np.arange(n) // 2)
    model = R3AN(_cfg(variant="arch1"))
    model.compile(**r3an_optimizers(model, total_steps=2))
    bn = model.E.get_layer("conv1_dw_bn")
    momentum = bn.momentum
    assert model.recalibrate_batch_norm(pairs.dataset(16, shuffle=False), batches=2) == 2
    # the exact mean over both batches of the per-batch means of the layer's input
    probe = keras.Model(model.E.input, model.E.get_layer("conv1_dw").output)
    faces = model.G(tf.math.l2_normalize(pairs.source, -1), training=False)
    means = [tf.reduce_mean(probe(faces[i:i + 16]), axis=[0, 1, 2]).numpy() for i in (0, 16)]
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean(means, axis=0), rtol=1e-4, atol=1e-5)
    assert bn.momentum == momentum  # restored


def test_translator_exports_to_tf_serving_and_onnx_with_parity(tmp_path, rng):
    from tfface.export import check_saved_model, export_onnx, export_saved_model
    from tfface.export.onnx import onnx_parity

    tr = R3AN(_cfg(variant="r3an")).translator()
    x = rng.normal(size=(5, D)).astype("float32")
    vdir = export_saved_model(tr, tmp_path / "serving", name="translator", input_name="source_features",
                              output_name="target_features", input_shape=(D,), warmup_inputs=x[:2])
    report = check_saved_model(vdir, expected_inputs={"source_features": [None, D]},
                               expected_outputs={"target_features": [None, D]})
    assert report["ok"], report["problems"]
    assert check_saved_model(vdir, expected_inputs={"source_features": [None, D + 1]})["ok"] is False
    path = export_onnx(tr, tmp_path / "translator.onnx", (D,), input_name="source_features")
    assert onnx_parity(tr, path, x) < 1e-5
