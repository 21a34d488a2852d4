"""``tfface export model|check``: export a trained embedder for TF Serving (+ ONNX), or check one."""

from __future__ import annotations

import json
from pathlib import Path

from tfface.errors import DataError


def run_export(a, model=None) -> None:
    """``model``: an already loaded Keras model to export instead of the file ``a.path`` (a preset)."""
    from tfface.export.check import check_saved_model

    if a.action == "check":
        from tfface.export.check import parse_expectation

        inputs = dict(parse_expectation(t) for t in getattr(a, "expect_input", None) or []) or None
        outputs = dict(parse_expectation(t) for t in getattr(a, "expect_output", None) or []) or None
        report = check_saved_model(a.path, expected_inputs=inputs, expected_outputs=outputs,
                                   signature=getattr(a, "signature", "serving_default"))
        print(json.dumps(report, indent=2))
        if not report.get("ok", False):
            raise DataError(f"{a.path}: SavedModel check failed: " + "; ".join(report.get("problems", [])))
        return
    from tfface.export.onnx import export_onnx, onnx_parity
    from tfface.export.saved_model import export_saved_model
    from tfface.keras_files import load_keras_file

    if model is None:
        src = Path(a.path)
        if not src.is_file():
            raise DataError(f"model file not found: {src}")
        model = load_keras_file(src, "model")  # safe_mode=True: a Lambda layer is refused, naming the file
    shape = tuple(model.input_shape[1:])
    version_dir = export_saved_model(model, a.out, name=a.name, version=a.version, input_shape=shape,
                                     input_name=a.input_name, output_name=a.output_name, overwrite=a.overwrite)
    report = check_saved_model(version_dir, strict=True)
    print(f"SavedModel: {version_dir} (signature serving_default: {a.input_name} -> {a.output_name}); check ok")
    if a.onnx:
        import numpy as np

        onnx_path = export_onnx(model, Path(a.out) / f"{a.name}.onnx", shape, input_name=a.input_name)
        x = np.random.default_rng(0).uniform(-1, 1, (4, *shape)).astype("float32")
        diff = onnx_parity(model, onnx_path, x)
        print(f"ONNX: {onnx_path} (max abs diff vs Keras {diff:.2e})")
        report["onnx_max_abs_diff"] = diff
