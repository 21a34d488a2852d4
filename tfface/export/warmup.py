"""TF Serving warm-up requests: ``<version>/assets.extra/tf_serving_warmup_requests``.

TF Serving replays these records when it loads a model version, so the first real request does not pay
for graph initialisation. The file is a TFRecord of ``tensorflow.serving.PredictionLog`` protos, each
holding one ``PredictRequest`` (``model_spec`` name and signature, ``inputs`` tensors); the server reads
at most 1000 records (TF Serving's ``saved_model_warmup`` documentation).

Example::

    write_warmup_requests(version_dir / "assets.extra" / WARMUP_FILE, "embedder", "images", examples)
    read_warmup_requests(path)[0]["images"].shape      # (1, 112, 112, 3)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfface.atomic import atomic_path
from tfface.errors import ConfigError, DataError

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving refuses more


def write_warmup_requests(path: str | os.PathLike, model_name: str, input_name: str, examples: np.ndarray,
                          signature_name: str = "serving_default", max_records: int = MAX_WARMUP_RECORDS,
                          batch_size: int = 1) -> Path:
    """Write one ``PredictRequest`` per ``batch_size`` rows of ``examples`` (first axis = batch; a dict
    ``{input name: batch}`` for a model with several inputs, ``input_name`` then unused).

    Only the first ``max_records * batch_size`` rows are used. Returns the path written (atomically).
    """
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    if not 1 <= max_records <= MAX_WARMUP_RECORDS:
        raise ConfigError(f"max_records must be in 1..{MAX_WARMUP_RECORDS} (TF Serving's limit), got {max_records}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    named = examples if isinstance(examples, dict) else {input_name: examples}  # several inputs: {name: batch}
    named = {k: np.asarray(v) for k, v in named.items()}
    for k, v in named.items():
        if v.ndim < 1 or len(v) == 0:
            raise DataError(f"warm-up examples for {k!r} must be a non-empty batch, got shape {v.shape}")
    n = min(len(v) for v in named.values())
    path = Path(path)
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for i in range(0, min(n, max_records * batch_size), batch_size):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name))
            for k, v in named.items():
                request.inputs[k].CopyFrom(tf.make_tensor_proto(v[i:i + batch_size]))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(path: str | os.PathLike) -> list[dict[str, np.ndarray]]:
    """The inputs of each warm-up ``PredictRequest`` in ``path``: a list of ``{input_name: ndarray}``."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(path)
    if not path.is_file():
        raise DataError(f"warm-up file not found: {path}")
    out = []
    try:
        for k, raw in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
            log = prediction_log_pb2.PredictionLog.FromString(raw)
            if log.WhichOneof("log_type") != "predict_log":
                raise DataError(f"{path}: record {k} is a {log.WhichOneof('log_type')}, not a predict_log")
            out.append({name: tf.make_ndarray(t) for name, t in log.predict_log.request.inputs.items()})
    except (tf.errors.DataLossError, DecodeError) as e:
        raise DataError(f"{path}: not a TFRecord of PredictionLog protos ({e})") from e
    return out
