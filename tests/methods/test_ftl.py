"""FTL (tfface.methods.ftl): the statistics and the transfer against the spec's numpy oracle, the phases'
freezing, replica parity, the pipelines, the long-tailed data, bad input and the recipe end to end."""

from __future__ import annotations

import numpy as np
import pytest

from tfface.errors import ConfigError, DataError
from tfface.methods.ftl import FTLConfig, FTLJoint, FTLNetworks, FTLStage1
from tfface.methods.ftl.data import joint_batches, sample_indices, stage1_batches
from tfface.methods.ftl.evaluation import centre_errors, closed_set, nn_rank1, spearman, weight_bias
from tfface.methods.ftl.losses import metric_l2
from tfface.methods.ftl.stats import (
    class_centres,
    hard_samples,
    pca_basis,
    shared_covariance,
    transfer,
    update_stats,
)

TINY = dict(input_shape=(16, 16, 1), encoder_layers=((8, 1), (8, 2), (16, 2)), feature_dim=8, filter_spatial=2,
            filter_channels=(8, 8, 8, 8, 8), decoder_channels=(8, 8, 8), batch_size=8, stage_learning_rate=1e-3)


# ---------------------------------------------------------------------------------------- the oracle
def _oracle(seed: int, methods, iters: int = 1500):
    """The spec's section 8.1 numpy oracle (a frozen-encoder world of Gaussian classes with a shared
    covariance), with the centres, Q, h and Eq. 7 from tfface.methods.ftl.stats."""
    n_reg, n_ur, m_reg, m_ur, dim, bs, lr = 100, 100, 60, 5, 32, 64, 1e-2
    rng = np.random.default_rng(seed)
    nc = n_reg + n_ur
    u, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    lmat = u * np.concatenate([np.full(6, 2.0), np.full(dim - 6, 0.3)])
    mu = rng.normal(size=(nc, dim)) * 0.35
    counts = [m_reg if c < n_reg else m_ur for c in range(nc)]
    xtr = np.concatenate([mu[c] + rng.normal(size=(counts[c], dim)) @ lmat.T for c in range(nc)])
    ytr = np.repeat(np.arange(nc), counts)
    xte = np.concatenate([mu[c] + rng.normal(size=(50, dim)) @ lmat.T for c in range(nc)])
    yte = np.repeat(np.arange(nc), 50)
    regular = np.arange(nc) < n_reg
    st = update_stats(xtr, None, ytr, regular, energy=0.95)
    c, q, hard = st.centres.astype(np.float64), st.basis.astype(np.float64), st.hard
    ur_idx = np.flatnonzero(~regular[ytr])

    def grad(w, x, y):
        z = x @ w.T
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        return p.T @ x / len(y)

    out = {}
    for meth in methods:
        r = np.random.default_rng(seed + 1000)
        w, m1, m2, t = np.zeros((nc, dim)), np.zeros((nc, dim)), np.zeros((nc, dim)), 0

        def step(g):
            nonlocal w, m1, m2, t
            t += 1
            m1, m2 = 0.9 * m1 + 0.1 * g, 0.999 * m2 + 0.001 * g * g
            w = w - lr * (m1 / (1 - 0.9 ** t)) / (np.sqrt(m2 / (1 - 0.999 ** t)) + 1e-8)

        for _ in range(iters):
            if meth == "sfmx":
                i = r.integers(0, len(ytr), bs)
                step(grad(w, xtr[i], ytr[i]))
            elif meth == "resample":
                i = sample_indices(ytr, bs, "class_balanced", r)
                step(grad(w, xtr[i], ytr[i]))
            else:  # Stage 1's three sequential updates
                ir, iu = hard[r.integers(0, len(hard), bs)], ur_idx[r.integers(0, len(ur_idx), bs)]
                step(grad(w, xtr[ir], ytr[ir]))
                step(grad(w, xtr[iu], ytr[iu]))
                step(grad(w, transfer(c, q, xtr[ir], ytr[ir], ytr[iu]), ytr[iu]))
        res = closed_set(xte @ w.T, yte, n_reg)
        out[meth] = (res["top1/ur"], weight_bias(w, np.bincount(ytr), n_reg)["rho"])
    return out


def test_the_spec_oracle_transfer_beats_resampling_beats_softmax():
    """Spec 8.1's fast check: UR(ftl) > UR(resample) > UR(sfmx) and rho(sfmx) > rho(resample) > rho(ftl)."""
    res = _oracle(0, ("sfmx", "resample", "ftl"))
    (ur_s, rho_s), (ur_r, rho_r), (ur_f, rho_f) = res["sfmx"], res["resample"], res["ftl"]
    assert ur_f > ur_r > ur_s, res
    assert rho_s > rho_r > rho_f, res


# ----------------------------------------------------------------------------------- the statistics
def test_centres_are_flip_averaged_means_over_the_near_frontal_images():
    rng = np.random.default_rng(0)
    g, gf = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    labels = np.array([0, 0, 0, 1, 1, 1])
    yaw = np.array([5.0, -30.0, 10.0, 40.0, 35.0, 30.0])  # class 1: no image with 2|yaw| <= 42
    c = class_centres(g, gf, labels, 2, yaw, pose_threshold=42.0)
    keep = [0, 2]  # Omega_0
    np.testing.assert_allclose(c[0], (g[keep] + gf[keep]).sum(0) / (2 * len(keep)))
    np.testing.assert_allclose(c[1], (g[3:] + gf[3:]).sum(0) / 6)  # no near-frontal image: all of them (A11)
    np.testing.assert_allclose(class_centres(g, None, labels, 2), [g[:3].mean(0), g[3:].mean(0)])


def test_covariance_basis_hard_list_and_transfer_match_their_equations():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(40, 5)) * np.array([3.0, 2.0, 1.0, 0.1, 0.1])
    labels = np.repeat(np.arange(4), 10)
    regular = np.array([True, True, True, False])
    c = class_centres(g, None, labels, 4)
    v, n = shared_covariance(g, labels, c, regular)
    dev = g[:30] - c[labels[:30]]
    np.testing.assert_allclose(v, sum(np.outer(d, d) for d in dev))
    assert n == 30
    q, k = pca_basis(v, 0.95)
    np.testing.assert_allclose(q.T @ q, np.eye(k), atol=1e-10)  # orthonormal
    p = q @ q.T
    np.testing.assert_allclose(p @ p, p, atol=1e-10)  # idempotent
    vals = np.sort(np.linalg.eigvalsh(v))[::-1]
    assert vals[:k].sum() / vals.sum() >= 0.95 > vals[:k - 1].sum() / vals.sum()
    h = hard_samples(g, labels, c, regular)
    dist = np.linalg.norm(g - c[labels], axis=1)
    expected = [i for i in range(40) if regular[labels[i]] and dist[i] > dist[labels == labels[i]].mean()]
    assert h.tolist() == expected
    # Eq. 7: a regular sample on its centre transfers to the UR centre; with Q = I, c_i + g_r - c_j
    np.testing.assert_allclose(transfer(c, q, c[[0]], np.array([0]), np.array([3])), c[[3]])
    np.testing.assert_allclose(transfer(c, np.eye(5), g[[4]], np.array([0]), np.array([3])), c[[3]] + g[[4]] - c[[0]])


def test_bad_statistics_input_names_the_field():
    g = np.zeros((5, 4))
    with pytest.raises(DataError, match="centre: class 1 has 1 training image"):
        class_centres(g, g, np.array([0, 0, 0, 0, 1]), 2)
    with pytest.raises(ConfigError, match="pca_components: K = 9 is larger than the feature size 4"):
        pca_basis(np.eye(4), components=9)
    with pytest.raises(ConfigError, match="ftl.pca_components"):
        FTLConfig(feature_dim=8, pca_components=9)
    with pytest.raises(DataError, match="regular classes: none"):
        update_stats(np.ones((6, 4)), None, np.repeat([0, 1], 3), np.array([False, False]))
    with pytest.raises(ConfigError, match="data.train_per_ur: 1 image per UR class"):
        from tfface.methods.ftl import FTLRecipe

        FTLRecipe(data={"train_per_ur": 1})


def test_m_l2_is_the_squared_norm_of_the_logits():
    z = np.array([[1.0, -2.0, 0.5]], np.float32)
    assert float(metric_l2(z)[0]) == pytest.approx(1 + 4 + 0.25)
    assert float(metric_l2(z, "mean")[0]) == pytest.approx(5.25 / 3)


# --------------------------------------------------------------------------------------- the phases
def _toy(n_classes=6, per=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n_classes * per, 16, 16, 1)).astype(np.float32)
    y = np.repeat(np.arange(n_classes), per)
    return x, y


def _stage1_data(nets, x, y, steps=2, seed=0):
    regular = np.arange(nets.num_classes) < 3
    g, _ = nets.features(x)
    st = update_stats(g, g, y, regular)
    return st, stage1_batches(x, y, st.hard, np.arange(3, nets.num_classes), steps, 8, nets.config.feature_dim,
                              seed=seed)


def test_stage1_steps_r_and_fc_three_times_and_leaves_enc_and_dec_bit_identical():
    x, y = _toy()
    nets = FTLNetworks(FTLConfig(**TINY), 6)
    st, ds = _stage1_data(nets, x, y, steps=1)
    s1 = FTLStage1(nets)
    s1.compile()
    s1.set_stats(st)
    frozen = [v.numpy().copy() for v in nets.enc.weights + nets.dec.weights]  # BN moving statistics included
    r0 = [v.numpy().copy() for v in nets.r.trainable_weights]
    logs = s1.fit(ds, epochs=1, verbose=0).history
    assert {int(o.iterations.numpy()) for o in s1.optimizers.values()} == {3}  # 3 updates per iteration
    for a, b in zip(frozen, [v.numpy() for v in nets.enc.weights + nets.dec.weights], strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(np.abs(a - b.numpy()).max() > 0 for a, b in zip(r0, nets.r.trainable_weights, strict=True))
    assert {"loss_regular", "loss_ur", "loss_transferred", "loss_reg"} <= set(logs)
    no_transfer = FTLStage1(nets, "none")
    no_transfer.compile()
    no_transfer.fit(ds, epochs=1, verbose=0)
    assert {int(o.iterations.numpy()) for o in no_transfer.optimizers.values()} == {2}


def test_stage2_leaves_fc_bit_identical_and_pretraining_moves_everything():
    x, y = _toy()
    nets = FTLNetworks(FTLConfig(**TINY), 6)
    s2 = FTLJoint(nets, FTLJoint.STAGE2, learning_rate=1e-3)
    s2.compile()
    w_fc = nets.fc.get_weights()[0].copy()
    enc0 = nets.enc.get_weights()
    s2.fit(joint_batches(x, y, 2, 8), epochs=1, verbose=0)
    np.testing.assert_array_equal(nets.fc.get_weights()[0], w_fc)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(enc0, nets.enc.get_weights(), strict=True))
    pre = FTLJoint(nets)
    pre.compile()
    logs = pre.fit(joint_batches(x, y, 2, 8), epochs=1, verbose=0).history
    assert np.abs(nets.fc.get_weights()[0] - w_fc).max() > 0
    assert logs["loss_total"][-1] == pytest.approx(logs["loss_sfmx"][-1] + logs["loss_recon"][-1]
                                                   + 0.25 * logs["loss_reg"][-1], rel=0.05)


def test_gaussian_transfer_draws_from_the_regular_covariance():
    x, y = _toy()
    nets = FTLNetworks(FTLConfig(**TINY), 6)
    st, _ = _stage1_data(nets, x, y)
    s1 = FTLStage1(nets, "gauss")
    s1.set_stats(st)
    eps = np.random.default_rng(0).standard_normal((20000, 8)).astype(np.float32)
    out = s1.transferred(None, None, np.full(20000, 4), eps).numpy() - st.centres[4]
    np.testing.assert_allclose(np.cov(out.T), st.covariance / st.regular_samples, atol=0.05 * np.abs(
        st.covariance / st.regular_samples).max())


def test_two_replicas_train_each_phase_as_one_device(two_cpu_strategy, tmp_path):
    from method_test_case import run_config_round_trip, run_deployable_parity, run_replica_parity

    x, y = _toy()
    cfg = FTLConfig(**TINY)
    probe = FTLNetworks(cfg, 6)
    st, _ = _stage1_data(probe, x, y)

    def build_stage1():
        s1 = FTLStage1(FTLNetworks(cfg, 6))
        s1.compile()
        s1.set_stats(st)
        return s1

    logs = run_replica_parity(build_stage1, lambda: stage1_batches(x, y, st.hard, np.arange(3, 6), 2, 8, 8),
                              two_cpu_strategy, rtol=2e-4, atol=2e-5)
    assert {"loss_regular", "loss_ur", "loss_transferred"} <= set(logs)

    def build_joint():
        j = FTLJoint(FTLNetworks(cfg, 6), learning_rate=1e-3)
        j.compile()
        return j

    run_replica_parity(build_joint, lambda: joint_batches(x, y, 2, 8), two_cpu_strategy, rtol=2e-4, atol=2e-5)
    run_config_round_trip(probe)
    run_deployable_parity(probe.embedding_model("f"), x[:4], tmp_path)
    paper = FTLNetworks(FTLConfig.preset("paper"), 3)  # the CASIA-Net-style 100 x 100, 320-D networks build
    assert paper.enc.output.shape[-1] == 320 and paper.dec.output.shape[1:] == (100, 100, 1)


# ------------------------------------------------------------------------------- pipelines and data
def test_sampling_is_class_balanced_and_stage1_batches_come_from_h_and_the_ur_classes():
    y = np.array([0] * 90 + [1] * 5 + [2] * 5)
    idx = sample_indices(y, 30000, "class_balanced", np.random.default_rng(0))
    share = np.bincount(y[idx], minlength=3) / 30000
    np.testing.assert_allclose(share, [1 / 3] * 3, atol=0.02)
    inst = sample_indices(y, 200, "instance", np.random.default_rng(0))
    assert sorted(inst[:100].tolist()) == list(range(100))  # one permutation per pass
    x = np.arange(100, dtype=np.float32).reshape(100, 1, 1, 1) * np.ones((1, 2, 2, 1), np.float32)
    hard = np.array([3, 7, 11])
    batch = next(iter(stage1_batches(x, y, hard, np.array([1, 2]), 1, 16, 4)))
    assert set(batch["x_r"].numpy()[:, 0, 0, 0].astype(int)) <= set(hard.tolist())
    assert set(batch["y_u"].numpy().tolist()) <= {1, 2}
    with pytest.raises(DataError, match="hard list h is empty"):
        stage1_batches(x, y, np.array([], np.int64), np.array([1]), 1, 4, 4)
    with pytest.raises(DataError, match="no under-represented classes"):
        stage1_batches(x, y, hard, np.array([]), 1, 4, 4)


def test_long_tailed_splits_share_renders_and_the_biased_variant_keeps_one_side():
    from tfface.data.long_tail import LongTailConfig, make_long_tail

    base = dict(num_regular=3, train_per_regular=20, val_per_class=1, test_per_class=2, unseen_identities=3,
                unseen_per_identity=2)
    small = make_long_tail(LongTailConfig(num_ur=2, **base), progress=False)
    large = make_long_tail(LongTailConfig(num_ur=4, **base), progress=False)
    assert small["counts"].tolist() == [20, 20, 20, 5, 5] and large["num_classes"] == 7
    rows = np.flatnonzero(large["train_y"] < 5)
    np.testing.assert_array_equal(large["train_x"][rows], small["train_x"])  # U2 is U4's first classes
    assert set(np.unique(small["test_y"])) == set(range(5)) and small["train_x"].max() <= 1.0
    biased = make_long_tail(LongTailConfig(num_ur=2, biased_ur=True, biased_yaw=(0.0, 35.0), **base), progress=False)
    ur = biased["train_y"] >= 3
    assert (biased["train_yaw"][ur] >= 0).all() and (biased["train_yaw"][~ur] < 0).any()
    full = make_long_tail(LongTailConfig(num_ur=2, full=True, **base), progress=False)
    assert full["counts"].tolist() == [20] * 5
    with pytest.raises(DataError, match="data.biased_yaw: UR identity"):
        make_long_tail(LongTailConfig(num_ur=2, biased_ur=True, biased_yaw=(34.0, 35.0), **base), progress=False)


def test_evaluation_metrics_on_hand_made_numbers():
    logits = np.array([[3.0, 0, 0], [0, 3.0, 0], [3.0, 0, 0], [0, 0, 3.0]])
    res = closed_set(logits, np.array([0, 1, 2, 2]), num_regular=2)
    assert res == {"top1/regular": 1.0, "top1/ur": 0.5, "ur_to_regular": 0.5}
    f = np.array([[1.0, 0], [0, 1.0], [1.0, 0.1]])
    nn = nn_rank1(f[:2], np.array([0, 1]), f, np.array([0, 1, 1]), 2, 1)
    assert nn == {"nn/regular": 1.0, "nn/ur": 0.5}
    w = np.array([[2.0, 0], [0, 2.0], [1.0, 0]])
    bias = weight_bias(w, np.array([60, 60, 5]), 2)
    assert bias["rho"] == pytest.approx(2.0) and bias["spearman"] == pytest.approx(spearman([2, 2, 1], [60, 60, 5]))
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    g = np.repeat(rng.normal(size=(5, 4)) * 5, 20, axis=0) + rng.normal(size=(100, 4))
    err = centre_errors(g, g, np.repeat(np.arange(5), 20), sizes=(1, 20))
    assert err["avg_all/20"] == pytest.approx(0.0, abs=1e-9) and err["avg_all/1"] == pytest.approx(err["pick_one/1"])


def test_the_recipe_trains_evaluates_and_exports_the_embedder(tmp_path):
    from tfface.experiments.recipes import load_experiment

    method, recipe, _ = load_experiment("ftl_builtin", overrides=[
        "data.num_regular=4", "data.num_ur=4", "data.train_per_regular=10", "data.val_per_class=1",
        "data.test_per_class=2", "data.unseen_identities=4", "data.unseen_per_identity=3", "eval.pairs=6",
        "model.batch_size=8", "train.pretrain_epochs=1", "train.cycles=1", "train.iterations=2",
        f"output_dir={tmp_path}"])
    report = method.run(recipe, verbose=0)
    assert report["export"]["check_ok"], report["export"]["problems"]
    assert 0.0 <= report["trained"]["top1/ur"] <= 1.0 and report["stats"][0]["components"] >= 1
    assert (tmp_path / "weight_norms.png").is_file() and list((tmp_path / "tensorboard").rglob("*.v2"))
    assert (tmp_path / "history.json").is_file()
