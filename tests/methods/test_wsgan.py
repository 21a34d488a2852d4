"""WSGAN (tfface.methods.wsgan): the alternating schedule, the critic's constraint, replica parity, the
Parzen scoring rule, the metrics, the feature-level world and the recipe end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfface.data.weak_strong import WeakStrongConfig, make_world, oracle_samples
from tfface.errors import ConfigError, DataError
from tfface.methods.wsgan import WSGAN, WSGANConfig
from tfface.methods.wsgan.data import alternating_batches, check_labels
from tfface.methods.wsgan.evaluation import generated_similarity, recall_at_k, tpr_at_fpr
from tfface.methods.wsgan.scoring import identity_scores, parzen_scores

SMALL = dict(weak_dim=8, strong_dim=8, feature_dim=8, z_dim=4, width=16, extractor_hidden=16, n_critic=3)


def _world(n=40, seed=0):
    rng = np.random.default_rng(seed)
    strong = rng.normal(size=(n * 4, 8)).astype("float32")
    return {"train_strong": strong, "train_strong_labels": np.repeat(np.arange(n), 4),
            "train_weak": rng.normal(size=(n, 8)).astype("float32"), "train_weak_labels": np.arange(n)}


def _dataset(w, cfg, batch=8, steps=2):
    return alternating_batches(w["train_strong"], w["train_strong_labels"], w["train_weak"], w["train_weak_labels"],
                               cfg.n_critic, cfg.z_dim, batch, batch).take(steps)


def test_one_train_step_runs_n_critic_d_phases_then_one_g_phase():
    cfg = WSGANConfig(**SMALL)
    w = _world()
    model = WSGAN(cfg, num_classes=40)
    model.compile()
    g0 = [v.numpy().copy() for v in model.G.trainable_variables]
    model.fit(_dataset(w, cfg, steps=1), epochs=1, verbose=0)
    its = {n: int(o.iterations.numpy()) for n, o in model.optimizers.items()}
    # D, W_C and E step in each D-phase; the shared F in every phase; G only in the G-phase
    assert its == {"f": cfg.n_critic + 1, "c": cfg.n_critic, "e": cfg.n_critic, "d": cfg.n_critic, "g": 1}
    assert any(np.abs(v.numpy() - v0).max() > 0 for v, v0 in zip(model.G.trainable_variables, g0, strict=True))
    # weight clipping: every critic variable (BN's gamma and beta included) inside [-c, c]
    for v in model.D.trainable_variables:
        assert np.abs(v.numpy()).max() <= cfg.clip + 1e-7, v.name


def test_variants_train_the_networks_their_losses_name():
    w = _world()
    for variant, nets in (("wsgan_no_e", {"f", "c", "d", "g"}), ("lc_only", {"f", "c", "g"}),
                          ("deterministic", {"f", "c", "d", "g"})):
        cfg = WSGANConfig(variant=variant, **SMALL)
        model = WSGAN(cfg, num_classes=40)
        model.compile()
        logs = model.fit(_dataset(w, cfg, steps=1), epochs=1, verbose=0).history
        assert set(model.optimizers) == nets
        assert ("loss_e" in logs) is False and ("loss_wasserstein" in logs) == ("d" in nets)
    det = WSGAN(WSGANConfig(variant="deterministic", **SMALL), num_classes=40)
    x = np.ones((2, 8), np.float32)
    np.testing.assert_allclose(det.generate(x, m=3, seed=0), det.generate(x, m=3, seed=1))  # z ignored


def test_gradient_penalty_option_trains_without_clipping():
    cfg = WSGANConfig.preset("gp", **SMALL)
    model = WSGAN(cfg, num_classes=40)
    model.compile()
    logs = model.fit(_dataset(_world(), cfg, steps=2), epochs=1, verbose=0).history
    assert np.isfinite(logs["loss_gp"][-1]) and logs["loss_gp"][-1] > 0


def test_two_replicas_train_as_one_device(two_cpu_strategy, tmp_path):
    from method_test_case import run_config_round_trip, run_deployable_parity, run_replica_parity

    cfg = WSGANConfig(**SMALL)
    w = _world()
    built = []

    def build():
        model = WSGAN(cfg, num_classes=40)
        model.compile()
        built.append(model)
        return model

    logs = run_replica_parity(build, lambda: _dataset(w, cfg, batch=8, steps=2), two_cpu_strategy, fit=True,
                              rtol=2e-4, atol=2e-5)
    assert {"loss_critic", "loss_wasserstein", "loss_e", "loss_cls_strong", "loss_cls_generated"} <= set(logs)
    run_config_round_trip(built[0])
    from tfface.signatures import NOISE, WEAK_FEATURES

    rng = np.random.default_rng(0)
    run_deployable_parity(built[0].generator_model(), {WEAK_FEATURES: rng.normal(size=(4, 8)).astype("float32"),
                                                       NOISE: rng.normal(size=(4, 4)).astype("float32")}, tmp_path)


def test_bad_settings_fail_with_the_field_named():
    with pytest.raises(ConfigError, match="shared_extractor"):
        WSGANConfig(weak_dim=8, strong_dim=16)
    with pytest.raises(ConfigError, match="wsgan.variant"):
        WSGANConfig(variant="wgan")
    model = WSGAN(WSGANConfig(**SMALL), num_classes=4)
    with pytest.raises(ConfigError, match="m: the number of samples"):
        model.generate(np.zeros((1, 8), np.float32), m=0)
    with pytest.raises(DataError, match="weak training identities have no strong samples"):
        check_labels(np.array([0, 0, 1]), np.array([0, 2]))


def test_parzen_scores_limits_and_errors():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(5, 7, 6)).astype("float32")
    gallery = rng.normal(size=(30, 6)).astype("float32")
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    s, g = unit(samples), unit(gallery)
    d2 = ((s[:, :, None, :] - g[None, None]) ** 2).sum(-1)  # (Q, m, G)
    # sigma -> 0: the nearest sample decides; sigma = inf: the mean squared distance (= distance to the mean)
    np.testing.assert_array_equal(parzen_scores(samples, gallery, 1e-3).argmax(1), (-d2.min(1)).argmax(1))
    np.testing.assert_allclose(parzen_scores(samples, gallery, math.inf), -d2.mean(1), rtol=1e-4, atol=1e-5)
    wide = parzen_scores(samples, gallery, math.inf)
    to_mean = -((s.mean(1)[:, None, :] - g[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(wide.argsort(1), to_mean.argsort(1))
    # a finite sigma is the log of the mean Gaussian kernel
    np.testing.assert_allclose(parzen_scores(samples, gallery, 0.5), np.log(np.exp(-d2 / 0.5).mean(1)), rtol=1e-4)
    with pytest.raises(ConfigError, match="sigma"):
        parzen_scores(samples, gallery, 0.0)
    bad = gallery.copy()
    bad[3, 0] = np.nan
    with pytest.raises(DataError, match="gallery contains NaN/Inf \\(first bad row 3\\)"):
        parzen_scores(samples, bad, 0.3)
    with pytest.raises(DataError, match="gallery must be"):
        parzen_scores(samples, gallery[:, :5], 0.3)
    with pytest.raises(DataError, match="m >= 1"):
        parzen_scores(samples[:, :0], gallery, 0.3)


def test_recall_tpr_and_similarity_on_hand_made_scores():
    scores = np.array([[0.9, 0.8, 0.1, 0.7], [0.2, 0.1, 0.3, 0.9]], np.float32)
    gallery_labels = np.array([0, 0, 1, 2])
    ids, per_id = identity_scores(scores, gallery_labels)
    np.testing.assert_allclose(per_id, [[0.9, 0.1, 0.7], [0.2, 0.3, 0.9]], rtol=1e-6)
    assert recall_at_k(scores, np.array([0, 1]), gallery_labels, ks=(1, 2)) == {"recall@1": 0.5, "recall@2": 1.0}
    tpr = tpr_at_fpr(scores, np.array([0, 1]), gallery_labels, fprs=(0.2,))
    assert tpr == {"tpr@fpr=0.2": pytest.approx(2 / 3)}  # 0.9, 0.8 above every negative but 0.9
    same = np.ones((3, 4, 5))
    sim = generated_similarity(same)
    assert sim["intra_sim"] == pytest.approx(1.0) and sim["inter_sim"] == pytest.approx(1.0)


def test_the_world_loses_what_its_condition_says_and_the_oracle_recovers_it():
    base = dict(train_identities=60, weak_train_identities=30, val_identities=20, test_identities=60, distractors=100)
    w2 = make_world(WeakStrongConfig(condition="C2", lost=4, **base))
    assert len(w2["train_strong"]) == 60 * 20 - 30  # the weak identities' source images dropped
    assert set(w2["train_weak_labels"]) <= set(w2["train_strong_labels"])
    cfg = WeakStrongConfig(condition="C2", lost=4, **base)
    # oracle density scoring beats the oracle's own mean (the sigma -> inf limit) in C2
    s = oracle_samples(w2["test_weak"], cfg, m=20)
    tuned = recall_at_k(parzen_scores(s, w2["gallery"], 0.2), w2["test_labels"], w2["gallery_labels"], ks=(1,))
    mean = recall_at_k(parzen_scores(s, w2["gallery"], math.inf), w2["test_labels"], w2["gallery_labels"], ks=(1,))
    assert tuned["recall@1"] > mean["recall@1"]
    # C0 keeps everything: the oracle's mean alone nearly always finds the identity
    w0 = make_world(WeakStrongConfig(condition="C0", **base))
    s0 = oracle_samples(w0["test_weak"], WeakStrongConfig(condition="C0", **base), m=20)
    assert recall_at_k(parzen_scores(s0, w0["gallery"], math.inf), w0["test_labels"], w0["gallery_labels"],
                       ks=(1,))["recall@1"] > 0.9
    with pytest.raises(ConfigError, match="world.condition"):
        WeakStrongConfig(condition="C3")


def test_the_recipe_trains_evaluates_and_exports_the_generator(tmp_path):
    from tfface.experiments.recipes import load_experiment

    method, recipe, _ = load_experiment("wsgan_features", overrides=[
        "data.world.train_identities=60", "data.world.weak_train_identities=30", "data.world.val_identities=10",
        "data.world.test_identities=20", "data.world.distractors=20", "data.world.strong_per_identity=4",
        "train.pretrain_epochs=1", "train.iterations=4", "train.strong_batch_size=16", "train.weak_batch_size=16",
        "eval.draws=1", f"output_dir={tmp_path}"])
    report = method.run(recipe, verbose=0)
    assert report["export"]["check_ok"], report["export"]["problems"]
    assert 0.0 <= report["metrics"]["m10/recall@1"] <= 1.0 and report["metrics"]["sigma"] in recipe.eval.sigmas
    assert (tmp_path / "report.json").is_file() and list((tmp_path / "tensorboard").rglob("*.v2"))


def test_parzen_search_over_an_index_matches_the_exhaustive_ranking():
    from tfface.retrieval import Index, parzen_search

    base = dict(train_identities=60, weak_train_identities=30, val_identities=10, test_identities=30, distractors=200)
    cfg = WeakStrongConfig(condition="C2", lost=4, **base)
    w = make_world(cfg)
    samples = oracle_samples(w["test_weak"], cfg, m=10)
    index = Index.build(w["gallery"], w["gallery_labels"] * 10 + np.arange(len(w["gallery"])) % 5, backend="exact")
    res = parzen_search(index, samples, sigma=0.2, k=5, candidates=50)
    full = parzen_scores(samples, index.vectors(), 0.2)
    expected = index.ids[np.argsort(-full, axis=1)[:, :5]]
    np.testing.assert_array_equal(res.ids, expected)
    with pytest.raises(DataError, match="index holds 64-D"):
        parzen_search(index, samples[:, :, :8], sigma=0.2)
