"""tfface.export: TF Serving SavedModels with warm-up records, ONNX, and a fresh-process check.

Example::

    from tfface.export import check_saved_model, export_onnx, export_saved_model
    version_dir = export_saved_model(embedder, "runs/export", name="embedder", version=1, input_shape=(64, 64, 3))
    report = check_saved_model(version_dir, expected_inputs=["images"], expected_outputs=["embeddings"])
    export_onnx(embedder, "runs/export/embedder.onnx", input_shape=(64, 64, 3))
"""

from __future__ import annotations

from tfface.export.check import check_saved_model
from tfface.export.onnx import export_onnx, onnx_parity
from tfface.export.saved_model import SERVING_DEFAULT, export_saved_model, export_saved_model_inputs
from tfface.export.warmup import WARMUP_DIR, WARMUP_FILE, read_warmup_requests, write_warmup_requests

__all__ = [
    "SERVING_DEFAULT",
    "WARMUP_DIR",
    "WARMUP_FILE",
    "check_saved_model",
    "export_onnx",
    "export_saved_model",
    "export_saved_model_inputs",
    "onnx_parity",
    "read_warmup_requests",
    "write_warmup_requests",
]
