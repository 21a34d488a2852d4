"""A training run killed mid-epoch (SIGKILL) and rerun ends bit-identical to an uninterrupted one; a backup
from another recipe or another model is refused, naming both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tfface.errors import ConfigError

RECIPE = """name: resume
method: recognizer
data: {builtin: {num_identities: 6, images_per_identity: 4, image_size: 56}}
model: {backbone: mobilenet_v2, backbone_kwargs: {width: 0.25, last_channels: 32, blocks: [[16, 1, 2]]},
        embedding_dim: 16}
train: {epochs: 3, batch_size: 4, optimizer: sgd, learning_rate: 0.05, warmup_epochs: 0.5, augment: true}
"""

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import keras
    from tfface.experiments.recipes import load_experiment
    from tfface.training.recognizer import load_training_data, train_recognizer

    class KillAt(keras.callbacks.Callback):  # SIGKILL in the middle of epoch 2 (no cleanup of any kind)
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    _, recipe, _ = load_experiment(sys.argv[1])
    images, labels = load_training_data(recipe, progress=False)
    extra = [KillAt()] if sys.argv[3] == "kill" else []
    train_recognizer(recipe, images, labels, out_dir=sys.argv[2], verbose=0, extra_callbacks=extra)
""")


def _train(tmp_path: Path, out: str, mode: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TFFACE_CACHE=str(tmp_path / "cache"), TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONHASHSEED="0")
    return subprocess.run([sys.executable, str(tmp_path / "train.py"), str(tmp_path / "r.yaml"), str(tmp_path / out),
                           mode], env=env, capture_output=True, text=True, timeout=600)


def _weights(path: Path) -> list[np.ndarray]:
    import keras

    import tfface.nets  # noqa: F401

    return keras.saving.load_model(path, compile=False).get_weights()


@pytest.mark.slow
def test_killed_run_resumes_bit_identical(tmp_path):
    (tmp_path / "r.yaml").write_text(RECIPE)
    (tmp_path / "train.py").write_text(SCRIPT)
    plain = _train(tmp_path, "plain", "plain")
    assert plain.returncode == 0, plain.stderr[-2000:]
    killed = _train(tmp_path, "resumed", "kill")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "resumed" / "embedder.keras").exists()
    meta = json.loads((tmp_path / "resumed" / "backup" / "training_metadata.json").read_text())
    assert meta["epoch"] == 1  # epoch 1 was backed up, epoch 2 was cut off mid-way
    resumed = _train(tmp_path, "resumed", "plain")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming 'resume' at epoch 2/3" in resumed.stdout
    a, b = _weights(tmp_path / "plain" / "embedder.keras"), _weights(tmp_path / "resumed" / "embedder.keras")
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))  # bit for bit
    ha = json.loads((tmp_path / "plain" / "history.json").read_text())["history"]["train"]
    hb = json.loads((tmp_path / "resumed" / "history.json").read_text())["history"]["train"]
    assert len(hb["loss"]) == 3 and ha == hb  # every epoch, the ones before the kill included
    assert not (tmp_path / "resumed" / "backup").exists()  # a finished run leaves no backup


def test_backup_of_another_recipe_or_model_is_refused(tmp_path):
    from tfface.experiments.recipes import load_experiment
    from tfface.methods.recognizer import build_recognizer
    from tfface.training.resume import resume_point

    (tmp_path / "r.yaml").write_text(RECIPE)
    _, recipe, _ = load_experiment(tmp_path / "r.yaml")
    kw = {"width": 0.25, "last_channels": 32, "blocks": [[16, 1, 2]]}
    model = build_recognizer("mobilenet_v2", (56, 56, 3), embedding_dim=16, num_classes=6, backbone_kwargs=kw)
    backup = tmp_path / "backup"
    assert resume_point(backup, recipe, model) == 0  # no backup: records this run
    (backup / "training_metadata.json").write_text(json.dumps({"epoch": 2, "batch": 0}))
    assert resume_point(backup, recipe, model) == 2
    other = recipe.replace(train=recipe.train.__class__(**{**recipe.train.__dict__, "learning_rate": 0.1}))
    with pytest.raises(ConfigError, match=r"another recipe \(train.learning_rate: 0.05 in the backup, 0.1 now\)"):
        resume_point(backup, other, model)
    wider = build_recognizer("mobilenet_v2", (56, 56, 3), embedding_dim=32, num_classes=6, backbone_kwargs=kw)
    with pytest.raises(ConfigError, match="another model"):
        resume_point(backup, recipe, wider)
    (backup / "tfface_run.json").unlink()
    with pytest.raises(ConfigError, match="without a readable tfface_run.json"):
        resume_point(backup, recipe, model)
