"""export/: TF Serving config, compose file and clients, checked without docker or a server."""

import ast
import importlib.util
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from google.protobuf import text_format
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.config import model_server_config_pb2

from tfface.cli import main
from tfface.export import export_saved_model
from tfface.export.check import _compare, parse_expectation

EXPORT = Path(__file__).resolve().parents[1] / "export"
DS, DT = 16, 24


def _load(name):
    spec = importlib.util.spec_from_file_location(f"serving_{name}", EXPORT / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inp = keras.Input((DS,), name="source_features")
    model = keras.Model(inp, keras.layers.Dense(DT)(keras.layers.Dense(32, activation="relu")(inp)))
    vdir = export_saved_model(model, tmp_path_factory.mktemp("serve"), name="translator",
                              input_name="source_features", output_name="target_features", input_shape=(DS,))
    sig = tf.saved_model.load(str(vdir)).signatures["serving_default"]
    return {"model": model, "vdir": vdir, "sig": sig}


def test_models_config_parses_and_lists_translator_and_embedder():
    cfg = text_format.Parse((EXPORT / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    models = {c.name: c for c in cfg.model_config_list.config}
    assert sorted(models) == ["embedder", "translator"]
    for name, c in models.items():
        assert c.base_path == f"/models/{name}" and c.model_platform == "tensorflow"


def _batching():
    text = (EXPORT / "batching_parameters.txt").read_text()
    body = "\n".join(line.split("#")[0] for line in text.splitlines())
    scalars = {k: int(v) for k, v in re.findall(r"(\w+)\s*\{\s*value:\s*(\d+)\s*\}", body)}
    allowed = [int(v) for v in re.findall(r"allowed_batch_sizes:\s*(\d+)", body)]
    leftover = re.sub(r"\w+\s*\{\s*value:\s*\d+\s*\}|allowed_batch_sizes:\s*\d+", "", body).strip()
    return scalars, allowed, leftover


def test_batching_parameters_are_consistent():
    scalars, allowed, leftover = _batching()
    assert leftover == ""  # nothing but the fields below
    assert set(scalars) == {"max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"}
    assert allowed == sorted(allowed) and allowed[-1] == scalars["max_batch_size"]  # TF Serving's rule
    assert scalars["num_batch_threads"] >= 1 and scalars["max_enqueued_batches"] >= 1
    for client in ("rest_client", "grpc_client"):  # the clients' default batch fits in one server batch
        assert "default=256" in (EXPORT / f"{client}.py").read_text()
        assert scalars["max_batch_size"] >= 256


def test_compose_agrees_with_models_config_and_batching_file():
    comp = yaml.safe_load((EXPORT / "compose.yaml").read_text())
    (svc,) = comp["services"].values()
    assert re.fullmatch(r"tensorflow/serving:2\.20(\.\d+)?", svc["image"])
    flags = dict(f.removeprefix("--").split("=", 1) for f in svc["command"])
    assert flags["port"] == "8500" and flags["rest_api_port"] == "8501"
    assert {"8500:8500", "8501:8501"} <= set(svc["ports"])
    assert flags["enable_batching"] == "true" and flags["enable_model_warmup"] == "true"
    mounts = {m.split(":")[1]: m.split(":")[0] for m in svc["volumes"]}
    for flag, local in (("model_config_file", "models.config"), ("batching_parameters_file", "batching_parameters.txt")):
        assert mounts[flags[flag]] == f"./{local}" and (EXPORT / local).is_file()
    assert mounts["/models"] == "../runs/export"  # tfface's default export base, relative to export/
    cfg = text_format.Parse((EXPORT / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    assert all(c.base_path.startswith("/models/") for c in cfg.model_config_list.config)


@pytest.mark.parametrize("client", ["rest_client", "grpc_client"])
def test_clients_do_not_import_tfface_and_share_options(client):
    src = (EXPORT / f"{client}.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert "tfface" not in imported
    for opt in ("--host", "--model", "--signature", "--input-name", "--output-name"):
        assert f'"{opt}"' in src


def test_rest_body_and_response_through_the_saved_model(translator):
    rest = _load("rest_client")
    x = np.random.default_rng(0).normal(size=(3, DS)).astype("float32")
    body = rest.build_predict_body(x, "source_features", "serving_default", "instances")
    body = json.loads(json.dumps(body))  # what goes over the wire
    assert body["signature_name"] == "serving_default" and len(body["instances"]) == 3
    # emulate the server: row format -> batch -> signature -> {"predictions": [...]}
    batch = np.asarray([inst["source_features"] for inst in body["instances"]], "float32")
    y = translator["sig"](source_features=tf.constant(batch))["target_features"].numpy()
    got = rest.parse_predict_response(json.dumps({"predictions": y.tolist()}), "target_features")
    np.testing.assert_allclose(got, translator["model"].predict_on_batch(x), atol=1e-5)

    col = rest.build_predict_body(x, "source_features", fmt="inputs")
    assert np.asarray(col["inputs"]["source_features"]).shape == (3, DS)
    multi = {"outputs": {"target_features": y.tolist(), "other": [1, 2, 3]}}
    assert rest.parse_predict_response(multi, "target_features").shape == (3, DT)
    assert rest.parse_predict_response({"predictions": [{"target_features": r} for r in y.tolist()]}).shape == (3, DT)
    with pytest.raises(RuntimeError, match="Input size"):
        rest.parse_predict_response({"error": "Input size does not match"})
    with pytest.raises(ValueError, match="NaN"):
        rest.build_predict_body(np.full((1, DS), np.nan))
    assert rest.predict_url("localhost", 8501, "translator") == "http://localhost:8501/v1/models/translator:predict"
    assert rest.predict_url("h", 1, "m", 3).endswith("/v1/models/m/versions/3:predict")


def test_grpc_request_and_response_through_the_saved_model(translator):
    grpc_client = _load("grpc_client")
    x = np.random.default_rng(1).normal(size=(5, DS)).astype("float32")
    req = grpc_client.build_predict_request(x, "translator", "source_features", "serving_default", version=2)
    req = predict_pb2.PredictRequest.FromString(req.SerializeToString())
    assert (req.model_spec.name, req.model_spec.signature_name, req.model_spec.version.value) == \
        ("translator", "serving_default", 2)
    inputs = {k: tf.make_ndarray(v) for k, v in req.inputs.items()}
    outs = translator["sig"](**{k: tf.constant(v) for k, v in inputs.items()})
    resp = predict_pb2.PredictResponse()
    for k, v in outs.items():
        resp.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
    got = grpc_client.parse_predict_response(resp, "target_features")
    np.testing.assert_allclose(got, translator["model"].predict_on_batch(x), atol=1e-5)
    assert grpc_client.parse_predict_response(resp, None).shape == (5, DT)


def test_export_check_cli_on_the_stand_in(translator, capsys):
    vdir = str(translator["vdir"])
    assert main(["export", "check", vdir, "--expect-input", "source_features:None,16:float32",
                 "--expect-output", "target_features:None,24"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["unregistered_ops"] == [] and report["warmup"]["ran"] == 4
    assert report["inputs"]["source_features"] == {"dtype": "float32", "shape": [None, 16],
                                                   "tensor": report["inputs"]["source_features"]["tensor"]}
    assert main(["export", "check", vdir, "--expect-input", "source_features:None,256"]) == 2
    err = capsys.readouterr().err
    assert "input 'source_features' has shape [None, 16], expected [None, 256]" in err


def test_check_compares_dtype_shape_and_names():
    actual = {"source_features": {"dtype": "float32", "shape": [None, 16], "tensor": "x:0"}}
    problems = _compare("input", actual, dict([parse_expectation("source_features::float64")]))
    assert problems == ["input 'source_features' has dtype float32, expected float64"]
    assert _compare("input", actual, dict([parse_expectation("source_features:None,16:float32")])) == []
    assert _compare("output", actual, ["embeddings"]) == [
        "output names ['source_features'] differ from the expected ['embeddings']"]
    assert parse_expectation("x:?,3") == ("x", {"shape": [None, 3], "dtype": None})
