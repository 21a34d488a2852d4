"""Index writers hold an exclusive lock: concurrent ``tfface index add`` runs lose no rows; a held lock
makes a writer give up after ``--lock-timeout`` with one line naming the index (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from tfface.cli import main
from tfface.data.features import save_features
from tfface.errors import ConfigError
from tfface.retrieval import Index
from tfface.retrieval.locking import IndexLockedError, index_lock, lock_path

ROOT = Path(__file__).resolve().parents[1]
D = 32


def _features(path: Path, start: int, n: int, seed: int) -> Path:
    x = np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)
    return save_features(path, x, np.zeros(n, np.int64), ids=np.arange(start, start + n))


@pytest.fixture
def index_dir(tmp_path):
    x = np.random.default_rng(0).normal(size=(500, D)).astype(np.float32)
    return Index.build(x, np.arange(500)).save(tmp_path / "ix")


def _dir_bytes(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_lock_path_is_beside_the_directory(tmp_path):
    assert lock_path(tmp_path / "gallery") == tmp_path / "gallery.lock"
    assert lock_path(str(tmp_path / "gallery") + "/") == tmp_path / "gallery.lock"
    with pytest.raises(ConfigError, match="lock timeout"):
        with index_lock(tmp_path / "gallery", timeout=-1):
            pass


def test_concurrent_cli_adds_keep_every_row(index_dir, tmp_path):
    """Two ``tfface index add`` processes started at once: both succeed and both sets of rows are kept."""
    files = [_features(tmp_path / f"add{i}.npz", 10_000 * (i + 1), 4000, seed=i + 1) for i in range(2)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [subprocess.Popen([sys.executable, "-m", "tfface", "index", "add", str(index_dir), "--features", str(f),
                               "--id-field", "ids"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for f in files]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert "added 4000" in out
    index = Index.load(index_dir)
    want = np.concatenate([np.arange(500), np.arange(10_000, 14_000), np.arange(20_000, 24_000)])
    assert len(index) == 8500
    np.testing.assert_array_equal(np.sort(index.ids), np.sort(want))


def test_held_lock_gives_a_clear_error_and_changes_nothing(index_dir, tmp_path, capsys):
    before = _dir_bytes(index_dir)
    feats = _features(tmp_path / "more.npz", 1000, 10, seed=3)
    with FileLock(lock_path(index_dir)):  # another writer
        assert main(["index", "add", str(index_dir), "--features", str(feats), "--id-field", "ids",
                     "--lock-timeout", "0.2"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"{index_dir}: another writer holds the index lock {index_dir}.lock (waited 0.2 s)" in err
        assert main(["index", "delete", str(index_dir), "--ids", "3", "--lock-timeout", "0.1"]) == 2
        assert "another writer holds the index lock" in capsys.readouterr().err
        assert main(["index", "build", "--features", str(feats), "-o", str(index_dir), "--overwrite",
                     "--backend", "exact", "--lock-timeout", "0.1"]) == 2
        assert "another writer holds the index lock" in capsys.readouterr().err
        with pytest.raises(IndexLockedError, match="another writer"):
            with index_lock(index_dir, timeout=0):
                pass
    assert _dir_bytes(index_dir) == before
    assert main(["index", "delete", str(index_dir), "--ids", "3", "--lock-timeout", "0.1"]) == 0  # free again
    assert len(Index.load(index_dir)) == 499
