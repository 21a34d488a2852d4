"""The README's command chain ("The command line", first shell block) runs as written, in order.

Each line runs in-process through ``tfface.cli.main`` in a temporary folder. The one exception is
``tfface train`` (minutes on 2 cores): a small untrained embedder with the recipe's input size is saved
where the training would write it, as the README says.
"""

import re
import shlex
from pathlib import Path

import numpy as np

from tfface.cli import main

ROOT = Path(__file__).resolve().parents[1]


def readme_chain() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The command line"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def _stand_in_embedder(path: Path) -> None:
    import keras

    inp = keras.Input((64, 64, 3), name="images")
    x = keras.layers.Conv2D(8, 3, strides=2)(inp)
    out = keras.layers.Dense(16)(keras.layers.GlobalAveragePooling2D()(x))
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.Model(inp, out).save(path)


def test_readme_command_chain(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TFFACE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    lines = readme_chain()
    assert [shlex.split(x)[1] for x in lines] == ["render", "train", "extract", "eval", "export"]
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == ".venv/bin/tfface", line
        if argv[1] == "train":  # not run in CI (see the README): a stand-in at the recipe's output
            _stand_in_embedder(tmp_path / "runs" / "recognizer_small" / "embedder.keras")
            continue
        assert main(argv[1:]) == 0, line
    out = capsys.readouterr().out
    assert "full report: runs/eval/report.json" in out
    with np.load(tmp_path / "feats.npz") as d:
        assert d["features"].shape == (64, 16)
    assert (tmp_path / "faces.png").is_file()
    assert (tmp_path / "runs" / "serving" / "embedder" / "1" / "saved_model.pb").is_file()
    assert (tmp_path / "runs" / "serving" / "embedder.onnx").is_file()
