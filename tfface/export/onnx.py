"""Export a Keras model to ONNX and measure its parity with onnxruntime.

``tf2onnx.convert.from_keras`` fails on Keras 3 (``KeyError: 'keras_tensor_N'``, onnx/tensorflow-onnx#2487),
so the export goes through ``model.export(path, format="onnx", input_signature=[...])``, which traces the
model's ``call`` with the given ``tf.TensorSpec`` and hands the function to tf2onnx's ``from_function``.
Keras requires the float32 dtype policy for this, so mixed-precision models are refused: rebuild the
inference model with ``dtype="float32"`` and copy the weights. The input keeps its name with a dynamic
batch axis; the output is named by tf2onnx (read it from the session, ``sess.get_outputs()[0].name``).

Example::

    from tfface.export import export_onnx, onnx_parity
    export_onnx(model, "runs/export/embedder.onnx", input_shape=(64, 64, 3))
    onnx_parity(model, "runs/export/embedder.onnx", images_preprocessed)    # max |keras - onnx|, ~1e-7
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfface.atomic import atomic_path
from tfface.errors import ConfigError, DataError


def export_onnx(model: Any, path: str | os.PathLike, input_shape: Sequence[int],
                input_name: str = "images", opset: int | None = None, batch_size: int | None = None) -> Path:
    """Write ``model`` (float32 policy) as ONNX with input ``input_name`` ``[batch, *input_shape]``; atomic.

    The batch axis is dynamic unless ``batch_size`` fixes it (some runtimes want static shapes).
    """
    import tensorflow as tf

    policy = getattr(getattr(model, "dtype_policy", None), "name", "float32")
    if policy != "float32":
        raise ConfigError(f"ONNX export needs the float32 dtype policy; model {model.name!r} uses {policy!r}")
    layers = model._flatten_layers() if hasattr(model, "_flatten_layers") else getattr(model, "layers", [])
    bad = sorted({layer.dtype_policy.name for layer in layers
                  if getattr(layer, "dtype_policy", None) is not None and layer.dtype_policy.name != "float32"})
    if bad:
        raise ConfigError(f"ONNX export needs float32 layers; model {model.name!r} has layers with policy {bad}")
    input_shape = tuple(int(d) for d in input_shape)
    spec = tf.TensorSpec([batch_size, *input_shape], tf.float32, name=input_name)
    path = Path(path)
    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Keras' tf2onnx patch probes np.object
        model.export(str(tmp), format="onnx", input_signature=[spec], opset_version=opset, verbose=False)
    return path


def onnx_parity(model: Any, path: str | os.PathLike, inputs: np.ndarray) -> float:
    """Max absolute difference between ``model(inputs)`` and onnxruntime (CPU) on the ONNX file at ``path``."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise DataError(f"ONNX file not found: {path}")
    x = np.asarray(inputs, dtype=np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    want = np.asarray(model.predict_on_batch(x))
    if got.shape != want.shape:
        raise DataError(f"{path}: ONNX output shape {got.shape} differs from the Keras model's {want.shape}")
    return float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if got.size else 0.0
