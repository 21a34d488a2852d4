"""Shared test set-up.

Two logical CPU devices are configured before any TensorFlow op runs, so tests can use
``tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])`` on a machine without GPUs.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError:  # already initialised by an earlier import; tests that need 2 devices skip
    pass


@pytest.fixture
def two_cpu_strategy():
    """A MirroredStrategy over two logical CPU devices.

    Each new strategy in one process would reuse the same collective-op keys and a second one that
    trains fails with "Shape mismatch in the collective instance"; TensorFlow's own tests bump the
    key base per strategy, and so does this fixture.
    """
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("two logical CPU devices could not be configured")
    tf.distribute.MirroredStrategy._collective_key_base += 100_000
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def rng():
    return np.random.default_rng(0)
