"""tfface.methods.recognizer and tfface.training.callbacks: training, saving, mixed precision, callbacks."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from colour_patterns import colour_patterns

from tfface.errors import ConfigError
from tfface.methods.recognizer import Recognizer, build_recognizer
from tfface.training.callbacks import ImageGridCallback, default_callbacks, image_grid

TINY = {
    "mobilenet_v2": {"width": 0.25, "last_channels": 32},
    "iresnet": {"depth": [1, 1, 1, 1], "width": 8},
}


def tiny(backbone="mobilenet_v2", num_classes=8, **kwargs):
    return build_recognizer(backbone, (32, 32, 3), embedding_dim=16, num_classes=num_classes,
                            backbone_kwargs=TINY[backbone], margin_kwargs={"s": 16.0, "m": 0.3}, **kwargs)


def test_call_returns_embeddings_and_embedding_model_is_named():
    model = tiny()
    x = np.zeros((2, 32, 32, 3), "float32")
    assert tuple(model(x).shape) == (2, 16)
    emb = model.embedding_model()
    assert emb.input_names == ["images"] if hasattr(emb, "input_names") else True
    assert emb.inputs[0].name.startswith("images")
    assert emb.layers[-1].name == "embeddings"
    np.testing.assert_allclose(np.asarray(emb(x)), np.asarray(model(x)), atol=1e-6)
    unit = np.asarray(model.embedding_model(normalize=True)(np.ones((2, 32, 32, 3), "float32")))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    # every weight exists after build_recognizer (the margin centres included)
    assert any("centres" in v.path for v in model.trainable_variables)


def test_build_and_compile_errors():
    with pytest.raises(ConfigError, match="num_classes"):
        build_recognizer("mobilenet_v2", (32, 32, 3), num_classes=None)
    with pytest.raises(ConfigError, match="'alexnet'"):
        build_recognizer("alexnet", (32, 32, 3), num_classes=4)
    with pytest.raises(ConfigError, match="'arcfaec'"):
        build_recognizer("mobilenet_v2", (32, 32, 3), num_classes=4, margin="arcfaec")
    model = tiny()
    with pytest.raises(ConfigError, match="loss"):
        model.compile(optimizer="sgd", loss="mse")


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "iresnet"])
def test_fit_reduces_the_margin_loss(backbone, tmp_path):
    keras.utils.set_random_seed(0)
    x, y = colour_patterns()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(64, seed=0).batch(16)
    model = tiny(backbone)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    before = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    callbacks = []
    if backbone == "mobilenet_v2":  # the usual callbacks ride along once
        callbacks = default_callbacks(str(tmp_path / "tb"), checkpoint_path=str(tmp_path / "ckpt.weights.h5"),
                                      backup_dir=str(tmp_path / "backup"), image_sample=(x[:9] * 127.5 + 127.5
                                                                                      ).astype(np.uint8))
    hist = model.fit(ds, epochs=5, shuffle=False, verbose=0, callbacks=callbacks).history
    after = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert sorted(hist) == ["accuracy", "loss"]
    assert hist["loss"][-1] < 0.5 * hist["loss"][0], hist["loss"]
    if backbone == "iresnet":
        # Inference mode uses the BN moving statistics (momentum 0.9); after only 20 steps the tiny
        # MobileNetV2's near-dead channels still carry much of their initial variance of 1, so its
        # inference loss lags its training loss. The iResNet's statistics have caught up.
        assert after["loss"] < 0.5 * before["loss"], (before, after)
    if callbacks:
        assert (tmp_path / "ckpt.weights.h5").is_file()
        assert any(f.startswith("events") for f in os.listdir(tmp_path / "tb" / "images"))
        assert os.listdir(tmp_path / "tb" / "train")


def test_logged_loss_is_the_global_mean_cross_entropy():
    """The loss tracker logs mean_i CE(margin(e_i, y_i)) over the batch (one device here;
    tests/test_distribute.py checks that two replicas log the same)."""
    x, y = colour_patterns(per_class=2)
    model = tiny()
    model.compile(optimizer="sgd")
    logs = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    logits = model.margin(model(x), y)
    manual = float(np.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)))
    assert logs["loss"] == pytest.approx(manual, rel=1e-5)
    loss, _ = model.compute_margin_loss(x, y, sample_weight=np.zeros(len(y), "float32"))
    assert float(loss) == pytest.approx(0.0, abs=1e-7)


def test_save_and_load_keras_gives_the_same_embeddings(tmp_path):
    keras.utils.set_random_seed(1)
    x, y = colour_patterns(per_class=2)
    model = tiny("iresnet")
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # moving statistics and optimizer state change
    path = tmp_path / "recognizer.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, Recognizer)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-5)
    assert type(loaded.margin).__name__ == "ArcFace" and loaded.margin.m == pytest.approx(0.3)
    assert loaded.compiled
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0)  # the loaded model trains on
    emb_path = tmp_path / "embedder.keras"
    model.embedding_model().save(emb_path)
    embedder = keras.saving.load_model(emb_path, safe_mode=True)
    np.testing.assert_allclose(np.asarray(embedder(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-5)


def test_mixed_precision_wraps_the_optimizer_and_keeps_float32_outputs():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x, y = colour_patterns(num_classes=4, per_class=4)
        model = tiny("iresnet", num_classes=4)
        model.compile(optimizer=keras.optimizers.SGD(0.01))
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.backbone.layers[1].compute_dtype == "float16"
        hist = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
        assert np.isfinite(hist["loss"][0])
        assert model(x).dtype == "float32"
        assert model.margin(model(x), y).dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_image_grid_and_callback(tmp_path):
    floats = np.linspace(-1, 1, 5 * 4 * 4 * 3, dtype="float32").reshape(5, 4, 4, 3)
    grid = image_grid(floats)
    assert grid.shape == (8, 12, 3) and grid.min() >= 0.0 and grid.max() <= 1.0
    assert image_grid(np.full((1, 2, 2, 3), 255, np.uint8)).max() == pytest.approx(1.0)
    cb = ImageGridCallback(lambda model: floats, str(tmp_path), every_n_epochs=2)
    for epoch in range(3):
        cb.on_epoch_end(epoch)
    cb.on_train_end()
    assert any(f.startswith("events") for f in os.listdir(tmp_path / "images"))
    with pytest.raises(ConfigError, match="checkpoint_path"):
        default_callbacks(str(tmp_path), checkpoint_path=str(tmp_path / "ckpt.h5"))
    kinds = [type(c).__name__ for c in default_callbacks(str(tmp_path), profile_batch=(2, 3))]
    assert kinds == ["TensorBoard"]


def test_shared_method_checks(two_cpu_strategy, tmp_path):
    from method_test_case import run_config_round_trip, run_deployable_parity, run_replica_parity

    run_config_round_trip(tiny())
    x, y = colour_patterns()
    run_deployable_parity(tiny().embedding_model(), x[:4], tmp_path)

    def build():
        keras.utils.set_random_seed(0)
        model = tiny("iresnet", sync_batchnorm=True)
        model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
        return model

    run_replica_parity(build, lambda: tf.data.Dataset.from_tensor_slices((x[:32], y[:32])).batch(16),
                       two_cpu_strategy)
