#!/usr/bin/env python3
"""Call a TF Serving model over REST: POST /v1/models/<model>[/versions/<v>]:predict.

Reads the ``features`` of a feature file (``.npz``, e.g. old-model gallery features for the translator),
sends them in requests of ``--batch-size`` rows, and prints the first results or writes them: a ``.npy``
of the outputs, or a ``.npz`` feature file with the outputs as ``features`` and the input's labels, ids
and paths. Needs only numpy and the standard library (urllib); it does not import tfface or TensorFlow.

    python export/rest_client.py --features old.npz --model translator \
        --input-name source_features --output-name target_features --out new.npz

Request bodies (TF Serving's REST API): row format ``{"signature_name": ..., "instances": [...]}``
(one entry per row; a dict ``{input_name: row}`` per instance when ``--input-name`` is given) or
columnar ``{"signature_name": ..., "inputs": {input_name: [[...], ...]}}`` (``--format inputs``).
Responses: ``{"predictions": [...]}`` (row format) or ``{"outputs": ...}`` (columnar); an error is
``{"error": "..."}`` with an HTTP error status.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

import numpy as np


def predict_url(host: str, port: int, model: str, version: int | None = None) -> str:
    """``http://host:port/v1/models/<model>[/versions/<version>]:predict``."""
    base = host if host.startswith(("http://", "https://")) else f"http://{host}"
    path = f"/v1/models/{model}" + (f"/versions/{int(version)}" if version is not None else "")
    return f"{base}:{int(port)}{path}:predict"


def build_predict_body(x: np.ndarray, input_name: str | None = "source_features",
                       signature: str = "serving_default", fmt: str = "instances") -> dict[str, Any]:
    """The JSON body of a Predict call for the batch ``x`` (first axis = rows).

    ``fmt="instances"`` (row format): ``{"instances": [{input_name: row}, ...]}``, or plain rows when
    ``input_name`` is None (a one-input signature). ``fmt="inputs"`` (columnar):
    ``{"inputs": {input_name: batch}}`` or ``{"inputs": batch}``.
    """
    x = np.asarray(x)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"expected a non-empty batch, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the batch has NaN/Inf values, which JSON cannot carry")
    body: dict[str, Any] = {"signature_name": signature}
    rows = x.tolist()
    if fmt == "instances":
        body["instances"] = rows if input_name is None else [{input_name: r} for r in rows]
    elif fmt == "inputs":
        body["inputs"] = rows if input_name is None else {input_name: rows}
    else:
        raise ValueError(f"fmt must be 'instances' or 'inputs', got {fmt!r}")
    return body


def parse_predict_response(response: dict[str, Any] | str | bytes, output_name: str | None = "target_features"
                           ) -> np.ndarray:
    """The output array of a Predict response body (``predictions`` or ``outputs``), float32.

    A multi-output response (dicts per row, or a dict of outputs) needs ``output_name``; a single-output
    response is returned whatever its name. ``{"error": ...}`` raises ``RuntimeError``.
    """
    if isinstance(response, bytes | str):
        response = json.loads(response)
    if "error" in response:
        raise RuntimeError(f"TF Serving error: {response['error']}")
    if "predictions" in response:
        preds = response["predictions"]
        if preds and isinstance(preds[0], dict):
            if output_name is None or output_name not in preds[0]:
                raise KeyError(f"response outputs are {sorted(preds[0])}; pick one with --output-name")
            preds = [p[output_name] for p in preds]
        return np.asarray(preds, dtype=np.float32)
    if "outputs" in response:
        outs = response["outputs"]
        if isinstance(outs, dict):
            if output_name in outs:
                outs = outs[output_name]
            elif len(outs) == 1:
                outs = next(iter(outs.values()))
            else:
                raise KeyError(f"response outputs are {sorted(outs)}; pick one with --output-name")
        return np.asarray(outs, dtype=np.float32)
    raise KeyError(f"not a Predict response (keys {sorted(response)})")


def post_json(url: str, body: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """POST ``body`` as JSON; the decoded JSON answer (TF Serving's error body on an HTTP error)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return {"error": f"HTTP {e.code}: {text[:500]}"}
    except urllib.error.URLError as e:
        raise SystemExit(f"{url}: cannot reach the server ({e.reason}); is TF Serving running?") from e


def read_features(path: str) -> dict[str, np.ndarray]:
    """The arrays of a feature ``.npz`` (``features`` required; never unpickles)."""
    with np.load(path, allow_pickle=False) as d:
        if "features" not in d.files:
            raise SystemExit(f"{path}: no 'features' array (has {sorted(d.files)})")
        return {k: d[k] for k in d.files}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="localhost", help="server host (or http://host)")
    p.add_argument("--port", type=int, default=8501, help="REST port")
    p.add_argument("--model", default="translator")
    p.add_argument("--version", type=int, help="a model version (default: the server's latest)")
    p.add_argument("--signature", default="serving_default")
    p.add_argument("--input-name", default="source_features")
    p.add_argument("--output-name", default="target_features")
    p.add_argument("--format", default="instances", choices=["instances", "inputs"])
    p.add_argument("--features", required=True, help="feature .npz whose 'features' are sent")
    p.add_argument("--rows", type=int, help="send only the first N rows")
    p.add_argument("--batch-size", type=int, default=256, help="rows per request (<= max_batch_size)")
    p.add_argument("--normalize", action="store_true", help="L2-normalise the outputs")
    p.add_argument("--out", help="write the outputs: .npy, or .npz with the input's labels/ids/paths")
    p.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args(argv)

    data = read_features(a.features)
    x = data["features"].astype(np.float32)[: a.rows]
    url = predict_url(a.host, a.port, a.model, a.version)
    outs = []
    for i in range(0, len(x), a.batch_size):
        body = build_predict_body(x[i : i + a.batch_size], a.input_name, a.signature, a.format)
        outs.append(parse_predict_response(post_json(url, body, a.timeout), a.output_name))
    y = np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
    if a.normalize and len(y):
        y /= np.linalg.norm(y, axis=1, keepdims=True)
    print(f"{url}: {len(x)} rows {x.shape[1:]} -> outputs {y.shape}")
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
