"""Export a Keras model as a TF Serving SavedModel: ``<base_dir>/<name>/<version>/``.

TF Serving's layout (``--model_base_path=<base_dir>/<name>``)::

    <base_dir>/<name>/<version>/saved_model.pb
                               /variables/variables.{index,data-*}
                               /assets.extra/tf_serving_warmup_requests

The model is written with ``keras.export.ExportArchive`` and one endpoint, ``serving_default`` (TF
Serving's default signature): a ``tf.function`` whose single input is a named
``tf.TensorSpec([None, *input_shape], tf.float32, name=input_name)`` and which returns
``{output_name: model(x)}`` as float32, so the signature's input and output keys are stable (unnamed
Keras inputs get ``keras_tensor_N`` keys, unnamed outputs ``output_0``). Any model mapping
``[None, ...]`` float32 to one tensor works: a face embedder (``images`` -> ``embeddings``) or a feature
translator (``source_features`` -> ``target_features``).

Example::

    from tfface.export import export_saved_model, check_saved_model
    version_dir = export_saved_model(model, "runs/export", name="embedder", version=1, input_shape=(64, 64, 3))
    check_saved_model(version_dir, expected_inputs=["images"], expected_outputs=["embeddings"])["ok"]
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfface.atomic import atomic_dir
from tfface.errors import ConfigError, DataError
from tfface.export.warmup import MAX_WARMUP_RECORDS, WARMUP_DIR, WARMUP_FILE, write_warmup_requests

SERVING_DEFAULT = "serving_default"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def export_saved_model(model: Any, base_dir: str | os.PathLike, name: str = "embedder", version: int = 1,
                       input_name: str = "images", output_name: str = "embeddings",
                       input_shape: Sequence[int] = (112, 112, 3), warmup_inputs: np.ndarray | None = None,
                       overwrite: bool = False, num_warmup: int = 4) -> Path:
    """Write ``model`` to ``<base_dir>/<name>/<version>/`` for TF Serving; returns that version directory.

    ``warmup_inputs`` (``(n, *input_shape)``) become the warm-up requests, one per row (at most 1000);
    by default ``num_warmup`` rows uniform in [-1, 1] (seed 0) are used. The version directory is built
    beside the target and renamed into place, so TF Serving never sees half a model; an existing version
    is refused unless ``overwrite``.
    """
    import keras
    import tensorflow as tf

    for what, value in (("name", name), ("input_name", input_name), ("output_name", output_name)):
        if not isinstance(value, str) or not _NAME.match(value):
            raise ConfigError(f"export {what} must be letters, digits, '_', '-' or '.', got {value!r}")
    if isinstance(version, bool) or not isinstance(version, int | np.integer) or version < 0:
        raise ConfigError(f"export version must be an integer >= 0 (TF Serving's version folders), got {version!r}")
    input_shape = tuple(int(d) for d in input_shape)
    if not input_shape or min(input_shape) < 1:
        raise ConfigError(f"input_shape must be the fixed per-example shape, got {input_shape}")
    version_dir = Path(base_dir) / name / str(int(version))
    if version_dir.exists() and not overwrite:
        raise DataError(f"{version_dir} already exists; pass overwrite=True or a new version")
    if warmup_inputs is None:
        rng = np.random.default_rng(0)
        warmup_inputs = rng.uniform(-1.0, 1.0, size=(num_warmup, *input_shape)).astype(np.float32)
    warmup_inputs = np.asarray(warmup_inputs, dtype=np.float32)
    if warmup_inputs.shape[1:] != input_shape or len(warmup_inputs) == 0:
        raise DataError(f"warmup_inputs must be (n, {', '.join(map(str, input_shape))}), got {warmup_inputs.shape}")

    if not model.built:
        model(np.zeros((1, *input_shape), np.float32))
    spec = tf.TensorSpec([None, *input_shape], tf.float32, name=input_name)

    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        y = model(x, training=False)
        if isinstance(y, dict | list | tuple):
            raise ConfigError(f"export_saved_model serves one output tensor; model {model.name!r} returns "
                              f"{type(y).__name__} of {len(y)}")
        return {output_name: tf.cast(y, tf.float32)}

    endpoint = tf.function(serve, input_signature=[spec], autograph=False)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SERVING_DEFAULT, endpoint)  # the first endpoint is also TF Serving's default

    with atomic_dir(version_dir) as tmp:
        archive.write_out(str(tmp), verbose=False)
        write_warmup_requests(tmp / WARMUP_DIR / WARMUP_FILE, name, input_name,
                              warmup_inputs[:MAX_WARMUP_RECORDS], signature_name=SERVING_DEFAULT)
    return version_dir


def export_saved_model_inputs(model: Any, base_dir: str | os.PathLike, name: str, inputs: dict[str, Sequence[int]],
                              output_name: str, warmup_inputs: dict[str, np.ndarray], version: int = 1,
                              overwrite: bool = False) -> Path:
    """:func:`export_saved_model` for a model of several named inputs (``{name: per-example shape}``, called
    as ``model([inputs in that order])``), e.g. WSGAN's generator (weak feature, z) -> strong feature."""
    import keras
    import tensorflow as tf

    for value in (name, output_name, *inputs):
        if not isinstance(value, str) or not _NAME.match(value):
            raise ConfigError(f"export names must be letters, digits, '_', '-' or '.', got {value!r}")
    version_dir = Path(base_dir) / name / str(int(version))
    if version_dir.exists() and not overwrite:
        raise DataError(f"{version_dir} already exists; pass overwrite=True or a new version")
    specs = [tf.TensorSpec([None, *map(int, shape)], tf.float32, name=k) for k, shape in inputs.items()]
    for k, shape in inputs.items():
        w = np.asarray(warmup_inputs.get(k), np.float32) if k in warmup_inputs else None
        if w is None or w.shape[1:] != tuple(map(int, shape)) or len(w) == 0:
            raise DataError(f"warmup_inputs[{k!r}] must be (n, {', '.join(map(str, shape))})")

    def serve(*xs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {output_name: tf.cast(model(list(xs), training=False), tf.float32)}

    endpoint = tf.function(serve, input_signature=specs, autograph=False)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SERVING_DEFAULT, endpoint)
    with atomic_dir(version_dir) as tmp:
        archive.write_out(str(tmp), verbose=False)
        write_warmup_requests(tmp / WARMUP_DIR / WARMUP_FILE, name, "", {k: np.asarray(v, np.float32)[:MAX_WARMUP_RECORDS]
                                                                         for k, v in warmup_inputs.items()},
                              signature_name=SERVING_DEFAULT)
    return version_dir
