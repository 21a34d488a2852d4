"""tfface.distribute and the Recognizer under MirroredStrategy (two logical CPU devices).

The central test trains the same tiny recognizer, from the same initial weights on the same
unshuffled batches (same GLOBAL batch size), once under the default strategy and once under a
two-replica MirroredStrategy, and requires the same logged losses and the same weight updates. It
checks the three things that go wrong in custom train steps: the loss averaged over the global batch
(``tf.nn.compute_average_loss``, not also divided by a Keras Loss), gradients summed over replicas,
and the logged loss multiplied back by ``num_replicas_in_sync``.

What the comparison needs, said plainly:

- **Synchronised BatchNorm on both sides** (``sync_batchnorm=True``). With per-replica statistics
  each replica normalises its half batch by its own mean and variance, which is a different
  function, not a rounding difference; ``test_per_replica_batchnorm_is_a_different_function``
  shows it. ``build_recognizer(sync_batchnorm=None)`` turns synchronisation on by itself under more
  than one replica.
- **A small learning rate and few steps.** The two runs differ by float32 summation order
  (per-step gradients agree to about 1e-5 relative). These tiny networks on 32x32 inputs have
  very sharp loss surfaces (scale-invariant conv kernels in front of BN layers whose batch
  variance is near zero), so at larger learning rates such rounding differences grow by orders of
  magnitude per step, on one device as much as on two. At ``lr=1e-4`` the trajectory is stable
  while the weights still move far more than the tolerance, so a gradient off by a factor of 2
  (the classic 1/N or N^2 scaling bug) would fail the update comparison, and a logged loss off by a
  factor of 2 would fail the loss comparison.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
from colour_patterns import colour_patterns

from tfface.distribute import get_strategy, num_replicas, resolve_sync_batchnorm
from tfface.methods.recognizer import build_recognizer

BACKBONE_KWARGS = {"depth": [1, 1, 1, 1], "width": 8}


def _model(sync_batchnorm, lr=1e-4):
    model = build_recognizer("iresnet", (32, 32, 3), embedding_dim=16, num_classes=8, backbone_kwargs=BACKBONE_KWARGS,
                             margin_kwargs={"s": 16.0, "m": 0.3}, sync_batchnorm=sync_batchnorm)
    model.compile(optimizer=keras.optimizers.SGD(lr, momentum=0.9))
    return model


def test_get_strategy_is_the_default_strategy_here(monkeypatch, caplog):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with caplog.at_level(logging.INFO, logger="tfface.distribute"):
        strategy = get_strategy()
    assert not isinstance(strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy))
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1 and num_replicas() == 1
    assert "default" in caplog.text
    assert resolve_sync_batchnorm(None) is False


def test_get_strategy_mirrors_over_all_gpus_once_per_process(monkeypatch, caplog):
    """With GPUs: one MirroredStrategy over all of them, reused by later calls. The two logical CPUs
    stand in for two GPUs here."""
    import tfface.distribute as distribute

    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("two logical CPU devices could not be configured")
    cpus = tf.config.list_logical_devices("CPU")[:2]
    real = tf.config.list_logical_devices
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setattr(distribute, "_CACHE", {})
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: cpus if kind == "GPU" else real(kind))
    with caplog.at_level(logging.INFO, logger="tfface.distribute"):
        first = get_strategy()
        second = get_strategy()
    assert isinstance(first, tf.distribute.MirroredStrategy) and first.num_replicas_in_sync == 2
    assert second is first
    assert caplog.text.count("MirroredStrategy over 2 GPU(s)") == 1


def test_get_strategy_inside_a_scope_returns_that_strategy(two_cpu_strategy):
    with two_cpu_strategy.scope():
        assert get_strategy() is two_cpu_strategy
        assert num_replicas() == 2
        assert resolve_sync_batchnorm(None) is True
        model = build_recognizer("iresnet", (32, 32, 3), embedding_dim=8, num_classes=4,
                                 backbone_kwargs=BACKBONE_KWARGS)
    bns = [layer for layer in model.backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(bn.synchronized for bn in bns) and model.head.sync_batchnorm


def test_mirrored_strategy_trains_like_one_device(two_cpu_strategy):
    x, y = colour_patterns()

    def dataset():  # no shuffling; the GLOBAL batch is 16 for both runs (8 per replica under 2)
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)

    keras.utils.set_random_seed(0)
    one = _model(sync_batchnorm=True)
    initial = one.get_weights()
    with two_cpu_strategy.scope():
        two = _model(sync_batchnorm=True)
        two.set_weights(initial)
    assert two.distribute_strategy.num_replicas_in_sync == 2

    # evaluation (test_step) first: no training dynamics involved, so the agreement is tight
    e1 = one.evaluate(dataset(), verbose=0, return_dict=True)
    e2 = two.evaluate(dataset(), verbose=0, return_dict=True)
    assert e2["loss"] == pytest.approx(e1["loss"], rel=1e-5)

    h1 = one.fit(dataset(), epochs=2, shuffle=False, verbose=0).history
    h2 = two.fit(dataset(), epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(h2["loss"], h1["loss"], rtol=1e-4)  # NOT divided by 2 replicas
    np.testing.assert_allclose(h2["accuracy"], h1["accuracy"], atol=1e-6)
    assert h1["loss"][1] < h1["loss"][0]  # the weights did move

    names = [v.path for v in one.weights]
    moved = 0
    for name, w0, w1, w2 in zip(names, initial, one.get_weights(), two.get_weights(), strict=True):
        np.testing.assert_allclose(w2, w1, rtol=1e-4, atol=1e-5, err_msg=name)
        d1, d2 = w1 - w0, w2 - w0
        if np.linalg.norm(d1) > 1e-3:  # compare the updates themselves: a 1/2 gradient scale fails here
            moved += 1
            assert np.linalg.norm(d2 - d1) < 1e-2 * np.linalg.norm(d1), name
    assert moved >= 10


def test_per_replica_batchnorm_is_a_different_function(two_cpu_strategy):
    """Without synchronised BN each replica normalises its half batch by its own statistics: the logged
    loss of a single step (the training-mode loss at the initial weights) differs from the one-device
    loss by far more than rounding. (With sync BN it matches: the test above.)"""
    x, y = colour_patterns(per_class=2)
    keras.utils.set_random_seed(0)
    one = _model(sync_batchnorm=False)
    initial = one.get_weights()
    with two_cpu_strategy.scope():
        two = _model(sync_batchnorm=False)
        two.set_weights(initial)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    ref = one.fit(ds, epochs=1, shuffle=False, verbose=0).history["loss"][0]
    got = two.fit(ds, epochs=1, shuffle=False, verbose=0).history["loss"][0]
    assert abs(got - ref) > 1e-3 * abs(ref), (ref, got)
