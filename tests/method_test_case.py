"""What every method must pass, as shared runners (after keras-hub's ``tests/test_case.py``).

Each method's test file (``tests/methods/test_<name>.py``) calls these with its own small model:

- :func:`run_config_round_trip`: ``from_config(get_config())`` rebuilds an equal model (same config,
  same weight shapes), so Keras can save and load it;
- :func:`run_replica_parity`: the same global batches under a 2-replica ``MirroredStrategy`` log the
  losses one device logs (global-batch averaging, not per replica) and, with ``fit=True``, end at the
  same weights (gradients summed correctly over replicas);
- :func:`run_deployable_parity`: the model a user deploys (embedder, translator, generator) gives the
  same outputs after a ``.keras`` save + ``safe_mode`` load and served from its SavedModel.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytest


def run_config_round_trip(model, custom_objects: dict | None = None) -> None:
    import keras

    config = model.get_config()
    kept = copy.deepcopy(config)
    with keras.saving.custom_object_scope(custom_objects or {}):
        clone = type(model).from_config(config)
    assert config == kept, "from_config changed the config it was given"
    assert clone.get_config() == kept
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in model.weights]


def run_replica_parity(build: Callable[[], object], dataset: Callable[[], object], strategy, fit: bool = True,
                       rtol: float = 1e-4, atol: float = 1e-5) -> dict:
    """``build()`` returns a compiled model (called once outside, once inside ``strategy.scope()``);
    ``dataset()`` the same global batches each call. Returns the one-device logs."""
    one = build()
    initial = one.get_weights()
    with strategy.scope():
        two = build()
    two.set_weights(initial)
    assert two.distribute_strategy.num_replicas_in_sync == 2
    if not fit:
        e1 = one.evaluate(dataset(), verbose=0, return_dict=True)
        e2 = two.evaluate(dataset(), verbose=0, return_dict=True)
        assert set(e1) == set(e2)
        for k in e1:
            assert e2[k] == pytest.approx(e1[k], rel=rtol, abs=atol), k
        return e1
    h1 = one.fit(dataset(), epochs=1, verbose=0, shuffle=False).history
    h2 = two.fit(dataset(), epochs=1, verbose=0, shuffle=False).history
    assert set(h1) == set(h2)
    for k in h1:  # NOT divided by the 2 replicas
        assert h2[k][-1] == pytest.approx(h1[k][-1], rel=rtol, abs=atol), k
    moved = 0
    for w0, w1, w2 in zip(initial, one.get_weights(), two.get_weights(), strict=True):
        np.testing.assert_allclose(w2, w1, rtol=rtol, atol=atol)
        moved += bool(np.abs(w1 - w0).max() > 1e-6)
    assert moved, "no weight moved: the parity check would pass for a model that never trains"
    return {k: v[-1] for k, v in h1.items()}


def run_deployable_parity(deployable, inputs, tmp_path, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    """A method's deployable model (an embedder, a translator, a generator) gives the same outputs after
    a ``.keras`` save and ``safe_mode`` load, and served from its TF Serving SavedModel (loaded with
    ``tf.saved_model.load``, called through ``serving_default``). ``inputs``: an array, or ``{input name:
    array}`` for a model of several named inputs (in the model's input order)."""
    import tensorflow as tf

    from tfface.export import export_saved_model, export_saved_model_inputs
    from tfface.keras_files import load_keras_file

    named = isinstance(inputs, dict)
    args = [np.asarray(v, np.float32) for v in inputs.values()] if named else np.asarray(inputs, np.float32)
    expected = np.asarray(deployable.predict(args, verbose=0))
    path = tmp_path / "deployable.keras"
    deployable.save(path)
    loaded = load_keras_file(path, compile=False)
    np.testing.assert_allclose(np.asarray(loaded.predict(args, verbose=0)), expected, rtol=rtol, atol=atol)
    out_name = deployable.output_names[0] if getattr(deployable, "output_names", None) else "out"
    if named:
        version = export_saved_model_inputs(deployable, tmp_path / "export", "deployable",
                                            {k: v.shape[1:] for k, v in inputs.items()}, out_name, inputs)
        served = tf.saved_model.load(str(version)).signatures["serving_default"](
            **{k: tf.constant(v, tf.float32) for k, v in inputs.items()})
    else:
        version = export_saved_model(deployable, tmp_path / "export", "deployable", input_name="x",
                                     output_name=out_name, input_shape=args.shape[1:], warmup_inputs=args)
        served = tf.saved_model.load(str(version)).signatures["serving_default"](x=tf.constant(args))
    np.testing.assert_allclose(served[out_name].numpy(), expected, rtol=rtol, atol=atol)
    assert np.abs(expected).max() > 0, "the deployable outputs zeros: the parity check would pass vacuously"
