#!/usr/bin/env python3
"""Call a TF Serving model over gRPC: PredictionService/Predict with a ``PredictRequest``.

Reads the ``features`` of a feature file (``.npz``), sends them in requests of ``--batch-size`` rows and
prints or writes the outputs (``.npy``, or ``.npz`` with the input's labels/ids/paths). Needs
``tensorflow-serving-api`` (which brings ``grpcio`` and ``tensorflow`` for ``make_tensor_proto``); it does
not import tfface.

    python export/grpc_client.py --features old.npz --model translator \
        --input-name source_features --output-name target_features --out new.npz
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

MAX_MESSAGE_BYTES = 256 * 2**20  # large batches of wide features exceed gRPC's 4 MiB default


def build_predict_request(x: np.ndarray, model: str = "translator", input_name: str = "source_features",
                          signature: str = "serving_default", version: int | None = None) -> Any:
    """A ``PredictRequest`` for the batch ``x`` (float32) into ``input_name`` of ``model``/``signature``."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"expected a non-empty batch, got shape {x.shape}")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto(x, dtype=tf.float32, shape=x.shape))
    return request


def parse_predict_response(response: Any, output_name: str | None = "target_features") -> np.ndarray:
    """The output array of a ``PredictResponse`` (its only output when ``output_name`` is absent)."""
    import tensorflow as tf

    names = sorted(response.outputs)
    if output_name is not None and output_name in response.outputs:
        name = output_name
    elif len(names) == 1:
        name = names[0]
    else:
        raise KeyError(f"response outputs are {names}; pick one with --output-name")
    return tf.make_ndarray(response.outputs[name]).astype(np.float32, copy=False)


def make_stub(host: str, port: int) -> Any:
    """A ``PredictionServiceStub`` on an insecure channel to ``host:port``."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"{host}:{int(port)}", options=[
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def read_features(path: str) -> dict[str, np.ndarray]:
    """The arrays of a feature ``.npz`` (``features`` required; never unpickles)."""
    with np.load(path, allow_pickle=False) as d:
        if "features" not in d.files:
            raise SystemExit(f"{path}: no 'features' array (has {sorted(d.files)})")
        return {k: d[k] for k in d.files}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=8500, help="gRPC port")
    p.add_argument("--model", default="translator")
    p.add_argument("--version", type=int, help="a model version (default: the server's latest)")
    p.add_argument("--signature", default="serving_default")
    p.add_argument("--input-name", default="source_features")
    p.add_argument("--output-name", default="target_features")
    p.add_argument("--features", required=True, help="feature .npz whose 'features' are sent")
    p.add_argument("--rows", type=int, help="send only the first N rows")
    p.add_argument("--batch-size", type=int, default=256, help="rows per request (<= max_batch_size)")
    p.add_argument("--normalize", action="store_true", help="L2-normalise the outputs")
    p.add_argument("--out", help="write the outputs: .npy, or .npz with the input's labels/ids/paths")
    p.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args(argv)

    data = read_features(a.features)
    x = data["features"].astype(np.float32)[: a.rows]
    stub = make_stub(a.host, a.port)
    outs = []
    for i in range(0, len(x), a.batch_size):
        req = build_predict_request(x[i : i + a.batch_size], a.model, a.input_name, a.signature, a.version)
        try:
            resp = stub.Predict(req, timeout=a.timeout)
        except Exception as e:  # grpc.RpcError: UNAVAILABLE when no server, INVALID_ARGUMENT for bad inputs
            detail = e.details() if hasattr(e, "details") else str(e)
            raise SystemExit(f"{a.host}:{a.port} {a.model}: Predict failed: {detail}") from e
        outs.append(parse_predict_response(resp, a.output_name))
    y = np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
    if a.normalize and len(y):
        y /= np.linalg.norm(y, axis=1, keepdims=True)
    print(f"{a.host}:{a.port} {a.model}/{a.signature}: {len(x)} rows {x.shape[1:]} -> outputs {y.shape}")
    if a.out:
        if a.out.endswith(".npz"):
            n = len(x)
            extra = {k: v[:n] for k, v in data.items() if k in ("labels", "ids", "paths")}
            np.savez(a.out, features=y, **extra)
        else:
            np.save(a.out, y)
        print(f"wrote {a.out}")
    else:
        np.set_printoptions(precision=4, suppress=True, linewidth=120)
        print(y[:3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
