"""GANFaces (tfface.methods.ganfaces): the simultaneous update and its optimizers, BEGAN's k_t, the EMA copy
of G, dropout at generation, the ablations, Eq. 7's loss and centroids, replica parity, the exported G,
input errors, the ``plain`` 3DMM-style renders and the recipe end to end."""

from __future__ import annotations

import numpy as np
import pytest

from tfface.errors import ConfigError, DataError
from tfface.methods.ganfaces import GANFaces, GANFacesConfig
from tfface.methods.ganfaces.data import ganfaces_batches
from tfface.methods.ganfaces.model import centroid_update, magnet_loss
from tfface.methods.ganfaces.nets import embedder

TINY = dict(image_size=16, ngf=4, d_hidden=4, d_bottleneck=8)
N_IDS = 6


def _embedder(cfg):
    return embedder(cfg.crop_size, 8, widths=(8, 8))


def _model(embed=True, **changes):
    cfg = GANFacesConfig(**{**TINY, **changes})
    model = GANFaces(cfg, N_IDS, embedder=_embedder(cfg) if embed else None)
    model.compile(run_eagerly=True)  # one or two steps: eager is faster than tracing (the graph: parity, recipe)
    return model


def _fresh(variant, init=None):
    """A model (dropout off, so two runs see the same step) with ``init`` weights when given."""
    cfg = GANFacesConfig(**TINY, variant=variant, dropout=0.0)
    model = GANFaces(cfg, N_IDS, embedder=_embedder(cfg))
    if init is not None:
        model.set_weights(init)
    return model


def _domains(seed=0, size=16):
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 256, (24, size, size, 3)).astype(np.uint8)
    faces[:, :2] = 0  # a black band: the rendered-face mask of L_id has something to leave out
    return {"synthetic": faces, "identities": np.arange(24) % N_IDS, "real": rng.integers(0, 256, faces.shape).astype(np.uint8),
            "paired_synthetic": faces[:6], "paired_real": rng.integers(0, 256, (6, size, size, 3)).astype(np.uint8)}


def _batches(model, d, steps=1, batch=8):
    return ganfaces_batches(d["synthetic"], d["identities"], d["real"], d["paired_synthetic"], d["paired_real"],
                            batch_size=batch, crop_size=model.config.crop_size, num_identities=N_IDS).take(steps)


def _weights(net):
    return [v.numpy().copy() for v in net.trainable_variables]


def _moved(before, net):
    return any(np.abs(a - b.numpy()).max() > 0 for a, b in zip(before, net.trainable_variables, strict=True))


def test_one_step_updates_every_network_once_from_one_forward_pass():
    model = _model(dropout=0.0)
    c0, nets = _weights(model.C) + [w.numpy() for w in model.C.non_trainable_variables], {}
    for name, net in model.networks.items():
        nets[name] = _weights(net)
    logs = model.fit(_batches(model, _domains(), steps=1), epochs=1, verbose=0).history
    assert {n: int(o.iterations.numpy()) for n, o in model.optimizers.items()} == {"g": 1, "g_prime": 1, "d_r": 1,
                                                                                   "d_s": 1}
    for name, net in model.networks.items():
        assert _moved(nets[name], net), name
    # C is frozen: neither its weights nor its BatchNorm statistics move
    after = _weights(model.C) + [w.numpy() for w in model.C.non_trainable_variables]
    assert not model.C.trainable_variables and all(np.array_equal(a, b) for a, b in zip(c0, after, strict=True))
    # step order: L_D used k_t = 0 (k is updated after the gradients), then k moved by this pass's balance
    assert logs["l_dr"][0] == pytest.approx(logs["dr_real"][0])
    k_r = np.clip(0.001 * (0.5 * logs["dr_real"][0] - logs["l_g"][0]), 0, 1)
    assert float(model.k_r.numpy()) == pytest.approx(k_r, rel=1e-4, abs=1e-9)
    assert np.abs(model.centroids.numpy()).sum() > 0  # centroids updated in the same step


def test_updates_are_simultaneous_g_prime_does_not_see_the_updated_g():
    """All gradients come from the pre-update forward pass: G's learning rate cannot change G''s step."""
    import keras

    init = _fresh("ganfaces").get_weights()
    runs = []
    for lr in (0.0, 0.05):
        model = _fresh("ganfaces", init)
        model.compile(optimizers={"g": keras.optimizers.Adam(lr)}, run_eagerly=True)
        model.fit(_batches(model, _domains()), epochs=1, verbose=0)
        runs.append((_weights(model.G), _weights(model.G_prime)))
    assert any(np.abs(a - b).max() > 0 for a, b in zip(runs[0][0], runs[1][0], strict=True))  # G did move
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_k_t_moves_and_stays_in_the_unit_interval():
    model = _model(lambda_k=5.0)
    seen = []
    for _ in range(3):
        model.fit(_batches(model, _domains(), steps=1), epochs=1, verbose=0)
        seen.append([float(k.numpy()) for k in (model.k_r, model.k_s, model.k_p)])
    seen = np.array(seen)
    assert seen.min() >= 0.0 and seen.max() <= 1.0
    assert seen.max() == 1.0  # a large step is clipped at 1
    assert (seen[:, :2] > 0).any()  # D_R's and D_S's k moved off 0


def test_the_ema_copy_of_g_trails_it_and_equals_it_with_decay_0():
    d = _domains()
    model = _model(embed=False, variant="no_c")
    model.fit(_batches(model, d, steps=2), epochs=1, verbose=0)
    ema = [w.numpy() for w in model.ema_generator().trainable_variables]
    assert any(np.abs(a - b.numpy()).max() > 1e-8 for a, b in zip(ema, model.G.trainable_variables, strict=True))
    plain = _model(embed=False, variant="no_c", ema_decay=0.0)
    plain.fit(_batches(plain, d, steps=2), epochs=1, verbose=0)
    for a, b in zip(plain.ema_generator().trainable_variables, plain.G.trainable_variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_dropout_stays_on_at_generation_and_off_in_the_deployable():
    model = _model(embed=False, variant="no_c")
    x = np.random.default_rng(0).uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)
    a, b = model.generate(x), model.generate(x)
    assert np.abs(a - b).max() > 1e-6  # the paper's dropout noise
    np.testing.assert_array_equal(model.generate(x, dropout=False), model.generate(x, dropout=False))
    gen = model.generator_model()
    np.testing.assert_allclose(gen.predict(x, verbose=0), model.generate(x, dropout=False), atol=1e-6)


def test_ablations_drop_their_losses():
    d = _domains()
    other = dict(d, paired_real=np.random.default_rng(9).integers(0, 256, d["paired_real"].shape).astype(np.uint8))

    def trained(variant, data, init, g_prime_scale=1.0):
        model = _fresh(variant, init)
        if g_prime_scale != 1.0:
            model.G_prime.set_weights([w * g_prime_scale for w in model.G_prime.get_weights()])
        model.compile(run_eagerly=True)
        return model, set(model.fit(_batches(model, data), epochs=1, verbose=0).history)

    init = _fresh("ganfaces").get_weights()
    full, logs = trained("ganfaces", d, init)
    assert {"l_dp", "dp_real", "k_p", "m_p", "l_c", "l_cyc"} <= logs
    full_other, _ = trained("ganfaces", other, init)
    assert _moved(_weights(full.G_prime), full_other.G_prime)  # L_DP reads the pairs
    no_dp, logs = trained("no_dp", d, init)
    no_dp_other, _ = trained("no_dp", other, init)
    assert not {"l_dp", "dp_real", "k_p"} & logs
    assert not _moved(_weights(no_dp.G_prime), no_dp_other.G_prime)  # without L_DP the pairs do not matter
    # without L_cyc, G's step does not depend on G' (L_cyc was G's only path through G')
    no_cyc, logs = trained("no_cyc", d, init)
    no_cyc_scaled, _ = trained("no_cyc", d, init, g_prime_scale=1.5)
    assert "l_cyc" in logs  # still logged, not trained
    for a, b in zip(no_cyc.G.trainable_variables, no_cyc_scaled.G.trainable_variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-7)
    assert _moved(_weights(full.G), trained("ganfaces", d, init, g_prime_scale=1.5)[0].G)  # with it, it does
    no_c = GANFaces(GANFacesConfig(**TINY, variant="no_c"), N_IDS)  # no embedder needed
    no_c.compile(run_eagerly=True)
    logs = set(no_c.fit(_batches(no_c, d), epochs=1, verbose=0).history)
    assert "l_c" not in logs and "l_dp" in logs and no_c.centroids is None


def test_magnet_loss_and_centroids_match_a_hand_computation():
    f = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
    c = np.array([[0.9, 0.1], [0.1, 0.9], [0.0, 0.0], [-1.0, 0.0]], np.float32)
    ids = np.array([0, 1, 0])
    d = ((f[:, None] - c[None]) ** 2).sum(-1)
    own = d[np.arange(3), ids]
    sigma = own.sum() / 2
    num = np.exp(-own / (2 * sigma**2) - 1.0)
    den = np.array([np.exp(-d[m, [j for j in range(4) if j != ids[m]]] / (2 * sigma**2)).sum() for m in range(3)])
    expected = np.maximum(-np.log(num / den), 0).mean()
    assert float(magnet_loss(f, ids, c, eta=1.0)) == pytest.approx(expected, rel=1e-5)
    var = own.sum() / 2  # sigma_is_variance: the exponent's denominator is 2 sigma
    num_v, den_v = np.exp(-own / (2 * var) - 1.0), np.array(
        [np.exp(-d[m, [j for j in range(4) if j != ids[m]]] / (2 * var)).sum() for m in range(3)])
    assert float(magnet_loss(f, ids, c, 1.0, sigma_is_variance=True)) == pytest.approx(
        np.maximum(-np.log(num_v / den_v), 0).mean(), rel=1e-5)
    assert float(magnet_loss(f, ids, c, eta=0.0)) >= 0.0  # the hinge
    # c <- 0.95 c + 0.05 f, duplicates of identity 0 accumulating (TF scatter_sub)
    new = np.asarray(centroid_update(c, ids, f, 0.95))
    np.testing.assert_allclose(new[0], c[0] - 0.05 * (c[0] - f[0]) - 0.05 * (c[0] - f[2]), rtol=1e-6)
    np.testing.assert_allclose(new[1], 0.95 * c[1] + 0.05 * f[1], rtol=1e-6)
    np.testing.assert_array_equal(new[2:], c[2:])
    # moving a sample towards its own centroid lowers the loss (in a batch large enough that sigma, a batch
    # statistic, barely moves with it)
    rng = np.random.default_rng(0)
    cs = rng.normal(size=(10, 8)).astype(np.float32)
    cs /= np.linalg.norm(cs, axis=1, keepdims=True)
    labels = np.arange(40) % 10
    fs = cs[labels] + 0.5 * rng.normal(size=(40, 8)).astype(np.float32)
    fs /= np.linalg.norm(fs, axis=1, keepdims=True)
    closer = fs.copy()
    closer[0] = 0.5 * (fs[0] + cs[labels[0]])
    assert float(magnet_loss(closer, labels, cs)) < float(magnet_loss(fs, labels, cs))


def test_two_replicas_train_as_one_device(two_cpu_strategy, tmp_path):
    from method_test_case import run_config_round_trip, run_deployable_parity, run_replica_parity

    d = _domains()
    built = []

    def build():
        cfg = GANFacesConfig(**TINY, dropout=0.0, learning_rate=1e-3)  # dropout draws are per replica
        model = GANFaces(cfg, N_IDS, embedder=_embedder(cfg))
        model.compile()
        built.append(model)
        return model

    logs = run_replica_parity(build, lambda: _batches(built[0], d, steps=2, batch=8), two_cpu_strategy, fit=True,
                              rtol=2e-4, atol=2e-5)
    assert {"l_g", "l_cyc", "l_dp", "l_c", "k_r", "m_r"} <= set(logs)
    np.testing.assert_allclose(built[1].centroids.numpy(), built[0].centroids.numpy(), rtol=2e-4, atol=2e-5)
    run_config_round_trip(built[0])
    x = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    run_deployable_parity(built[0].generator_model(), x, tmp_path)


def test_bad_inputs_fail_with_the_field_named():
    with pytest.raises(ConfigError, match="ganfaces.variant"):
        GANFacesConfig(variant="no_d")
    with pytest.raises(ConfigError, match="needs a frozen embedder C"):
        GANFaces(GANFacesConfig(**TINY), N_IDS)
    with pytest.raises(ConfigError, match=r"C takes 16x16x3 images.*14x14x3.*c_input_size"):
        GANFaces(GANFacesConfig(**TINY), N_IDS, embedder=embedder(16, 8, widths=(8,)))
    model = _model()
    with pytest.raises(DataError, match=r"synthetic: G was built for 16x16x3 images"):
        model.generate(np.zeros((2, 24, 24, 3), np.float32))
    big = _domains(size=24)
    with pytest.raises(DataError, match=r"synthetic: G was built for 16x16x3"):
        model.fit(ganfaces_batches(big["synthetic"], big["identities"], big["real"], big["paired_synthetic"],
                                   big["paired_real"], batch_size=4, crop_size=14).take(1), epochs=1, verbose=0)
    d = _domains()
    with pytest.raises(DataError, match="real: the unpaired real domain is empty"):
        ganfaces_batches(d["synthetic"], d["identities"], d["real"][:0], batch_size=4)
    with pytest.raises(DataError, match=r"identities: labels must be in \[0, 3\)"):
        ganfaces_batches(d["synthetic"], d["identities"], d["real"], num_identities=3)
    with pytest.raises(DataError, match="GANFaces.fit needs dict batches with synthetic, real, identities, crop"):
        model.fit(ganfaces_batches(d["synthetic"], d["identities"], d["real"], batch_size=4).take(1), epochs=1,
                  verbose=0)


def test_plain_style_is_the_paired_3dmm_render_and_old_cache_keys_stay():
    from tfface.data.builtin import cache_key
    from tfface.data.synthetic import FaceDataConfig, NuisanceConfig, default_model, render_identity

    # existing configs hash as before the plain style was added (no new config field)
    assert cache_key(FaceDataConfig()) == "bb4863fb46b4c582"
    assert cache_key(FaceDataConfig(image_size=64, nuisance=NuisanceConfig(style="sketch"))) == "9f9e8c1d07b01974"
    cfg = FaceDataConfig(num_identities=1, images_per_identity=2, image_size=56)
    photo, lm_p, nz_p = render_identity(default_model(), cfg, 0)
    plain, lm_s, nz_s = render_identity(default_model(), cfg.replace(nuisance={"style": "plain"}), 0)
    np.testing.assert_allclose(lm_p, lm_s)  # the same pose, expression, placement
    assert nz_p[0]["yaw"] == nz_s[0]["yaw"]
    background = (plain == 0).all(-1)  # black where the photo has its cluttered background
    assert 0.1 < background.mean() < 0.9 and (photo[background] > 0).any(-1).mean() > 0.9
    face = ~background
    assert np.abs(photo[face].astype(int) - plain[face]).mean() > 3  # no marks, hair, specular, noise


def test_the_recipe_trains_generates_and_exports(tmp_path, monkeypatch):
    from tfface.data.builtin import load_dataset
    from tfface.experiments.recipes import load_experiment

    monkeypatch.setenv("TFFACE_CACHE", str(tmp_path / "cache"))
    method, recipe, _ = load_experiment("ganfaces_builtin", overrides=[
        "data.render_size=64", "data.synthetic_identities=4", "data.synthetic_per_identity=2",
        "data.real_identities=3", "data.real_per_identity=2", "data.pairs=4", "data.embedder_identities=3",
        "data.embedder_per_identity=2", "model.image_size=16", "model.ngf=4", "model.d_hidden=4",
        "model.d_bottleneck=8", "embedder.embedding_dim=8", "embedder.epochs=1", "embedder.batch_size=4",
        "train.iterations=4", "train.batch_size=4", "train.image_every=2", "generate.identities=3",
        "generate.images_per_identity=2", f"output_dir={tmp_path / 'run'}"])
    report = method.run(recipe, verbose=0)
    out = tmp_path / "run"
    assert report["export"]["check_ok"], report["export"]["problems"]
    assert report["steps"] == 4 and report["pairs"] == 4 and 0 <= report["final"]["k_r"] <= 1
    gen = load_dataset(out / "ganfaces_generated.npz")
    assert gen.images.shape == (6, 16, 16, 3) and list(gen.labels) == [0, 0, 1, 1, 2, 2]
    assert (out / "report.json").is_file() and (out / "history.json").is_file()
    assert list((out / "tensorboard" / "images").glob("*.v2"))
    with pytest.raises(ConfigError, match="data.real_identities"):
        load_experiment("ganfaces_builtin", overrides=["data.real_identities=0"])
