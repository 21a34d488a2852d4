"""Presets: a finished recognizer run packed to float16 and rebuilt from its recipe, checked for damage."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tfface import presets
from tfface.cli import main
from tfface.errors import ConfigError

TINY = """name: tiny_preset
method: recognizer
data: {builtin: {num_identities: 4, images_per_identity: 3, image_size: 56}}
model: {backbone: iresnet, backbone_kwargs: {depth: [1, 1, 1, 1], width: 16}, embedding_dim: 16, margin: cosface}
train: {epochs: 1, batch_size: 4, optimizer: sgd, learning_rate: 0.1, warmup_epochs: 0.0, augment: false}
"""


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    d = tmp_path_factory.mktemp("preset")
    (d / "tiny.yaml").write_text(TINY)
    assert main(["train", str(d / "tiny.yaml"), "--out", str(d / "run")]) == 0
    assert main(["preset", "pack", "tiny-new", "--run", str(d / "run"), "--folder", str(d / "presets")]) == 0
    return d


def test_packed_preset_matches_the_trained_embedder_within_float16(packed):
    from tfface.data.builtin import render_dataset
    from tfface.data.synthetic import FaceDataConfig
    from tfface.embed import Embedder
    from tfface.keras_files import load_keras_file

    folder = packed / "presets"
    assert presets.available(folder) == ["tiny-new"]
    rec = presets.info("tiny-new", folder)
    assert rec["dtype"] == "float16" and rec["preprocessing"] == "tfface56" and rec["recipe"]["name"] == "tiny_preset"
    assert rec["machine"]["cores"] >= 1 and rec["train_seconds"] > 0
    with np.load(folder / "tiny-new.weights.npz", allow_pickle=False) as z:
        assert {z[k].dtype for k in z.files} == {np.dtype("float16")}
    faces = render_dataset(FaceDataConfig(num_identities=3, images_per_identity=2, image_size=56,
                                          identity_offset=900), progress=False)
    preset = presets.load("tiny-new", folder)
    trained = Embedder.from_keras(load_keras_file(packed / "run" / "embedder.keras"), "tfface56")
    a, b = preset.embed(faces.images), trained.embed(faces.images)
    cos = np.sum(a * b, axis=1)
    assert cos.min() > 0.999, cos  # float16 weights, float32 compute
    assert not np.allclose(a, b, atol=0)  # it really is the float16 copy


def test_damaged_or_missing_presets_fail_with_the_file_named(packed, tmp_path):
    import shutil

    folder = tmp_path / "p"
    shutil.copytree(packed / "presets", folder)
    with pytest.raises(ConfigError, match=r"preset 'nope': not found in .* \(available: tiny-new\)"):
        presets.load("nope", folder)
    w = folder / "tiny-new.weights.npz"
    blob = bytearray(w.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    w.write_bytes(bytes(blob))
    with pytest.raises(ConfigError, match=r"tiny-new.weights.npz: sha256 .* does not match"):
        presets.load_model("tiny-new", folder)
    rec = json.loads((folder / "tiny-new.json").read_text())
    (folder / "tiny-new.json").write_text(json.dumps({**rec, "format": 99}))
    with pytest.raises(ConfigError, match="format 99"):
        presets.info("tiny-new", folder)


def test_preset_cli_lists_and_refuses_bad_calls(packed, capsys):
    assert main(["preset", "list", "--folder", str(packed / "presets")]) == 0
    assert "tiny-new: tiny_preset (iresnet, float16" in capsys.readouterr().out
    assert main(["preset", "pack", "x"]) == 2
    assert "give --run DIR" in capsys.readouterr().err
    assert main(["preset", "pack", "x", "--run", str(packed)]) == 2
    assert "not a finished recognizer run" in capsys.readouterr().err


def test_shipped_presets_load_in_a_fresh_process():
    names = presets.available()
    if not names:
        pytest.skip("no preset shipped in this checkout")
    code = ("import numpy as np; from tfface import presets\n"
            "for n in presets.available():\n"
            "    e = presets.load(n); s = e.preprocessing.model_input_shape\n"
            "    v = e.embed(np.full((2, *s), 128, np.uint8)); assert v.shape == (2, e.dim), v.shape\n"
            "    print(n, e.dim)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert set(names) <= {line.split()[0] for line in out.stdout.splitlines()}
    assert sum((presets.PRESET_DIR / f"{n}.weights.npz").stat().st_size for n in names) <= 10 * 2**20


def test_recipes_name_presets_as_models():
    from tfface.experiments.recipes import load_experiment
    from tfface.experiments.train_recognizer import embedder_for

    _, recipe, _ = load_experiment("r3an_presets")
    assert (recipe.data.old, recipe.data.new) == ("preset:builtin-old", "preset:builtin-new")  # not made a path
    with pytest.raises(ConfigError, match=r"data.old: preset 'nope': not found"):
        embedder_for("preset:nope", where="data.old")


def test_a_shipped_preset_exports_and_passes_the_serving_check(tmp_path, capsys):
    if "builtin-old" not in presets.available():
        pytest.skip("no preset shipped in this checkout")
    assert main(["export", "model", "preset:builtin-old", "--out", str(tmp_path / "serving"), "--name", "old",
                 "--onnx"]) == 0
    out = capsys.readouterr().out
    assert "check ok" in out and "ONNX" in out
    assert main(["export", "check", str(tmp_path / "serving" / "old" / "1"),
                 "--expect-input", "images:None,64,64,3", "--expect-output", "embeddings:None,128"]) == 0
