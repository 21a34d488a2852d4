"""Check an exported SavedModel the way a server would see it: in a fresh process that knows no tfface.

:func:`check_saved_model` runs a small script with ``sys.executable -I`` (isolated mode) that imports
only ``tensorflow`` (and ``tensorflow_serving.apis`` to parse warm-up records), never ``tfface``. It

1. reads ``saved_model.pb`` (``saved_model_pb2``): tags, signature keys, the chosen signature's inputs
   and outputs (name, dtype, shape, as ``saved_model_cli show`` prints them);
2. collects every op type in the graph and in its function library and flags those not in TensorFlow's
   op registry (custom ops, e.g. ScaNN's, that a stock TF Serving build cannot run);
3. loads the model with ``tf.saved_model.load(dir, tags=["serve"])``;
4. replays ``assets.extra/tf_serving_warmup_requests`` through the signature and checks that every
   output is finite, with the batch size of its request and the signature's declared shape.

Also flagged: no ``serve`` tag, a signature whose method is not ``tensorflow/serving/predict``, a warm-up
file with no records, and inputs/outputs differing from the expected names, shapes or dtypes.

It returns the script's JSON report as a dict, with ``ok`` and a list of ``problems``. Example::

    report = check_saved_model("runs/export/embedder/1", expected_inputs=["images"],
                               expected_outputs={"embeddings": [None, 128]})
    assert report["ok"], report["problems"]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tfface.errors import DataError

Expected = Iterable[str] | Mapping[str, Sequence[int | None] | Mapping[str, Any] | None] | None

_SCRIPT = r'''
import json, math, sys
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

model_dir, signature, out_path = sys.argv[1:4]
report = {"dir": model_dir, "signature": signature, "problems": [], "tensorflow": tf.__version__}

def spec(info):
    shape = None if info.tensor_shape.unknown_rank else [
        None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim]
    return {"dtype": tf.dtypes.as_dtype(info.dtype).name, "shape": shape, "tensor": info.name}

sm = saved_model_pb2.SavedModel()
with open(model_dir + "/saved_model.pb", "rb") as f:
    sm.ParseFromString(f.read())
serve = [mg for mg in sm.meta_graphs if "serve" in mg.meta_info_def.tags]
report["tags"] = [sorted(mg.meta_info_def.tags) for mg in sm.meta_graphs]
if not serve:
    report["problems"].append("no meta graph tagged 'serve' (TF Serving loads tag 'serve')")
mg = serve[0] if serve else sm.meta_graphs[0]
report["signatures"] = sorted(mg.signature_def)
if signature in mg.signature_def:
    sd = mg.signature_def[signature]
    report["method_name"] = sd.method_name
    report["inputs"] = {k: spec(v) for k, v in sorted(sd.inputs.items())}
    report["outputs"] = {k: spec(v) for k, v in sorted(sd.outputs.items())}
    if sd.method_name != "tensorflow/serving/predict":
        report["problems"].append(f"signature {signature!r} has method {sd.method_name!r}, "
                                  "not 'tensorflow/serving/predict' (TF Serving's Predict API)")
    for kind in ("inputs", "outputs"):
        for k, v in report[kind].items():
            if v["dtype"] in ("variant", "resource", "invalid"):
                report["problems"].append(f"{kind[:-1]} {k!r} has dtype {v['dtype']}, not servable")
else:
    report["inputs"], report["outputs"] = {}, {}
    report["problems"].append(f"no signature {signature!r}; signatures: {sorted(mg.signature_def)}")

functions = {fn.signature.name for m in sm.meta_graphs for fn in m.graph_def.library.function}
ops = set()
for m in sm.meta_graphs:
    ops.update(n.op for n in m.graph_def.node)
    for fn in m.graph_def.library.function:
        ops.update(n.op for n in fn.node_def)
ops -= functions
unregistered = sorted(op for op in ops if op_def_registry.get(op) is None and not hasattr(tf.raw_ops, op))
report["ops"] = sorted(ops)
report["unregistered_ops"] = unregistered
if unregistered:
    report["problems"].append(f"ops not registered in stock TensorFlow (custom ops): {unregistered}")

warm = {"present": False, "records": 0, "ran": 0}
report["warmup"] = warm
try:
    loaded = tf.saved_model.load(model_dir, tags=["serve"])
    fn = loaded.signatures[signature] if signature in loaded.signatures else None
    report["loaded"] = True
except Exception as e:
    report["loaded"] = False
    fn = None
    report["problems"].append(f"tf.saved_model.load failed: {type(e).__name__}: {e}"[:2000])

import os
warm_path = os.path.join(model_dir, "assets.extra", "tf_serving_warmup_requests")
if os.path.isfile(warm_path):
    warm["present"] = True
    from tensorflow_serving.apis import prediction_log_pb2
    try:
        for k, raw in enumerate(tf.data.TFRecordDataset(warm_path).as_numpy_iterator()):
            log = prediction_log_pb2.PredictionLog.FromString(raw)
            warm["records"] += 1
            if log.WhichOneof("log_type") != "predict_log":
                report["problems"].append(f"warm-up record {k} is {log.WhichOneof('log_type')}, not predict_log")
                continue
            req = log.predict_log.request
            sig_name = req.model_spec.signature_name or "serving_default"
            if sig_name != signature:
                report["problems"].append(f"warm-up record {k} targets signature {sig_name!r}")
                continue
            inputs = {n: tf.make_ndarray(t) for n, t in req.inputs.items()}
            if sorted(inputs) != sorted(report["inputs"]):
                report["problems"].append(
                    f"warm-up record {k} has inputs {sorted(inputs)}, signature takes {sorted(report['inputs'])}")
                continue
            if fn is None:
                continue
            outs = fn(**{n: tf.constant(v) for n, v in inputs.items()})
            batch = len(next(iter(inputs.values())))
            for name, y in outs.items():
                y = y.numpy()
                if y.shape[:1] != (batch,) or not np.all(np.isfinite(y)):
                    report["problems"].append(
                        f"warm-up record {k}: output {name!r} has shape {y.shape} or non-finite values")
                want = report["outputs"].get(name, {}).get("shape")
                if want is not None and (len(want) != y.ndim or any(
                        w is not None and w != g for w, g in zip(want, y.shape))):
                    report["problems"].append(
                        f"warm-up record {k}: output {name!r} has shape {list(y.shape)}, the signature says {want}")
            warm["ran"] += 1
            warm.setdefault("output_shapes", {n: list(v.shape) for n, v in outs.items()})
        if warm["records"] == 0:
            report["problems"].append("assets.extra/tf_serving_warmup_requests holds no records")
    except Exception as e:
        report["problems"].append(f"warm-up records could not be replayed: {type(e).__name__}: {e}"[:2000])
else:
    report.setdefault("warnings", []).append("no assets.extra/tf_serving_warmup_requests")

report["tfface_imported"] = "tfface" in sys.modules
if report["tfface_imported"]:
    report["problems"].append("the check process imported tfface")
with open(out_path, "w") as f:
    json.dump(report, f, indent=2)
'''


def check_saved_model(version_dir: str | os.PathLike, expected_inputs: Expected = None,
                      expected_outputs: Expected = None, signature: str = "serving_default",
                      strict: bool = False, timeout: float = 600.0) -> dict[str, Any]:
    """Inspect, load and warm up a SavedModel in a fresh process; the JSON report as a dict.

    ``expected_inputs`` / ``expected_outputs`` are names, or ``{name: shape}`` with ``None`` for free axes
    (``None`` for the shape skips the shape check), or ``{name: {"shape": ..., "dtype": "float32"}}``
    (see :func:`parse_expectation` for the command line's ``NAME:SHAPE:DTYPE``). Mismatches, custom ops, a failed load or a failed
    warm-up record are listed in ``report["problems"]`` and make ``report["ok"]`` false; with ``strict``
    they raise :class:`DataError` naming the directory. A directory without ``saved_model.pb`` always raises.
    """
    version_dir = Path(version_dir)
    if not version_dir.is_dir():
        raise DataError(f"SavedModel directory not found: {version_dir}")
    if not (version_dir / "saved_model.pb").is_file():
        raise DataError(f"{version_dir} is not a SavedModel (no saved_model.pb)")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryDirectory(prefix="tfface-check-") as tmp:
        out = Path(tmp) / "report.json"
        try:
            proc = subprocess.run(
                [sys.executable, "-I", "-c", _SCRIPT, str(version_dir.resolve()), signature, str(out)],
                capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)
        except subprocess.TimeoutExpired as e:
            raise DataError(f"checking {version_dir} timed out after {timeout:.0f} s") from e
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise DataError(f"checking {version_dir} failed (exit {proc.returncode}): " + " | ".join(tail))
        report = json.loads(out.read_text())
    report["problems"] += _compare("input", report.get("inputs", {}), expected_inputs)
    report["problems"] += _compare("output", report.get("outputs", {}), expected_outputs)
    report["ok"] = not report["problems"]
    if strict and not report["ok"]:
        raise DataError(f"{version_dir} failed the SavedModel check: " + "; ".join(report["problems"]))
    return report


def parse_expectation(text: str) -> tuple[str, dict[str, Any]]:
    """``"NAME[:SHAPE[:DTYPE]]"`` -> ``(name, {"shape": [...] or None, "dtype": str or None})``.

    SHAPE is comma-separated with ``None`` (or ``?``, ``-1``) for a free axis, e.g.
    ``source_features:None,256:float32``; an empty SHAPE (``name::float32``) checks only the dtype.
    """
    from tfface.errors import ConfigError

    name, _, rest = text.partition(":")
    shape_text, _, dtype = rest.partition(":")
    if not name:
        raise ConfigError(f"expected tensor {text!r}: give NAME[:SHAPE[:DTYPE]], e.g. source_features:None,256")
    shape = None
    if shape_text.strip():
        shape = []
        for d in shape_text.split(","):
            d = d.strip()
            if d.lower() in ("none", "?", "-1"):
                shape.append(None)
            else:
                try:
                    shape.append(int(d))
                except ValueError as e:
                    raise ConfigError(f"expected tensor {text!r}: axis {d!r} is not an integer or None") from e
    return name, {"shape": shape, "dtype": dtype.strip() or None}


def _compare(kind: str, actual: dict[str, dict], expected: Expected) -> list[str]:
    if expected is None:
        return []
    wanted = dict(expected) if isinstance(expected, Mapping) else {name: None for name in expected}
    problems = []
    if sorted(wanted) != sorted(actual):
        problems.append(f"{kind} names {sorted(actual)} differ from the expected {sorted(wanted)}")
    for name, want in wanted.items():
        if want is None or name not in actual:
            continue
        shape, dtype = (want.get("shape"), want.get("dtype")) if isinstance(want, Mapping) else (want, None)
        if shape is not None:
            got = actual[name]["shape"]
            want_shape = [None if d is None else int(d) for d in shape]
            if got != want_shape:
                problems.append(f"{kind} {name!r} has shape {got}, expected {want_shape}")
        if dtype is not None and actual[name]["dtype"] != dtype:
            problems.append(f"{kind} {name!r} has dtype {actual[name]['dtype']}, expected {dtype}")
    return problems
