"""Disk faults in the index writers (``index build``, ``upgrade-gallery``) and the temporaries of killed runs.

A full disk used to kill ``index build --overwrite`` with SIGBUS (the vectors were written through a
memory map of a sparse file) and leave its temporary folder behind; it is now an ``OSError`` from an
ordinary chunked write (simulated here in :func:`tfface.retrieval.persistence._write_chunk`), which the
CLI reports in one line while the previous index stays byte-identical. Temporaries are named
``.<target>.tfface-tmp-<pid>-...``: those of dead processes are removed by the next writer of that
target, those of live ones are left alone.
"""

from __future__ import annotations

import errno
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest

from tfface.cli import main
from tfface.data.features import save_features
from tfface.retrieval import persistence


def _digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}.tfface-"))


def _one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("tfface ")]
    assert len(err) == 1, err
    return err[0]


@pytest.fixture
def gallery(tmp_path):
    rng = np.random.default_rng(0)
    feats = tmp_path / "feats.npz"
    save_features(feats, rng.normal(size=(300, 8)).astype("float32"), np.arange(300) // 3)
    ix = tmp_path / "ix"
    assert main(["index", "build", "--features", str(feats), "-o", str(ix), "--backend", "exact"]) == 0
    return feats, ix


def _full_disk_after_first_chunk(monkeypatch):
    calls = {"n": 0}
    real = persistence._write_chunk

    def write(f, buf):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, buf)

    monkeypatch.setattr(persistence, "chunks", lambda n: [slice(i, min(i + 64, n)) for i in range(0, n, 64)])
    monkeypatch.setattr(persistence, "_write_chunk", write)
    return calls


def test_full_disk_during_index_build_is_one_line_and_keeps_the_old_index(gallery, monkeypatch, capsys):
    feats, ix = gallery
    before = _digest(ix)
    calls = _full_disk_after_first_chunk(monkeypatch)
    assert main(["index", "build", "--features", str(feats), "-o", str(ix), "--overwrite", "--backend", "exact"]) == 2
    assert calls["n"] == 2  # the chunked writer ran (a memmap writer would never get here)
    line = _one_line(capsys)
    assert "No space left on device" in line and str(ix) in line and "Traceback" not in line
    assert _digest(ix) == before
    assert _leftovers(ix.parent, "ix") == []


def test_too_little_free_space_is_refused_before_writing(gallery, monkeypatch, capsys):
    feats, ix = gallery
    before = _digest(ix)
    monkeypatch.setattr("tfface.atomic.free_bytes", lambda path: 0)
    assert main(["index", "build", "--features", str(feats), "-o", str(ix), "--overwrite", "--backend", "exact"]) == 2
    assert "not enough free disk space" in _one_line(capsys)
    assert _digest(ix) == before and _leftovers(ix.parent, "ix") == []


def test_upgrade_gallery_full_disk_and_held_lock(gallery, tmp_path, monkeypatch, capsys):
    from tfface.retrieval.locking import index_lock

    _, ix = gallery
    inp = keras.Input((8,), name="source_features")
    keras.Model(inp, keras.layers.Dense(12)(inp)).save(tmp_path / "t.keras")
    out = tmp_path / "new"
    with index_lock(out):  # another writer holds the output
        assert main(["upgrade-gallery", "--translator", str(tmp_path / "t.keras"), "--index", str(ix),
                     "--out", str(out), "--no-progress", "--lock-timeout", "0.2"]) == 2
    assert "another writer holds the index lock" in _one_line(capsys)
    _full_disk_after_first_chunk(monkeypatch)
    assert main(["upgrade-gallery", "--translator", str(tmp_path / "t.keras"), "--index", str(ix),
                 "--out", str(out), "--no-progress"]) == 2
    assert "No space left on device" in _one_line(capsys)
    assert not out.exists() and _leftovers(tmp_path, "new") == []


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temporaries_of_dead_runs_are_cleaned_by_the_next_writer(gallery, tmp_path):
    feats, ix = gallery
    dead, live = _dead_pid(), subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f".ix.tfface-tmp-{dead}-abc"
        stale.mkdir()
        (stale / "vectors.npy").write_bytes(b"half")
        busy = tmp_path / f".ix.tfface-tmp-{live.pid}-def"
        busy.mkdir()
        old_file = tmp_path / f".faces.npz.tfface-tmp-{dead}-x.npz"
        old_file.write_bytes(b"half")
        assert main(["index", "build", "--features", str(feats), "-o", str(ix), "--overwrite",
                     "--backend", "exact"]) == 0
        assert not stale.exists() and busy.exists()  # a live writer's temporary is left alone
        assert main(["render", "--identities", "1", "--images", "1", "--size", "64",
                     "-o", str(tmp_path / "faces.npz")]) == 0
        assert not old_file.exists()
    finally:
        live.kill()
        live.wait()


def test_a_dead_writers_moved_aside_index_is_put_back(tmp_path):
    from tfface.atomic import clean_stale_temporaries

    aside = tmp_path / f".ix.tfface-old-{_dead_pid()}"
    aside.mkdir()
    (aside / "manifest.json").write_text("{}")
    clean_stale_temporaries(tmp_path / "ix")
    assert (tmp_path / "ix" / "manifest.json").is_file() and not aside.exists()


def test_read_only_folder_is_one_line(gallery, tmp_path, monkeypatch, capsys):
    feats, _ = gallery

    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(dir))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    assert main(["render", "--identities", "1", "--images", "1", "--size", "64",
                 "-o", str(tmp_path / "ro" / "faces.npz")]) == 2
    line = _one_line(capsys)
    assert "Read-only file system" in line and str(tmp_path / "ro") in line
    assert main(["index", "build", "--features", str(feats), "-o", str(tmp_path / "ro2"), "--backend", "exact"]) == 2
    line = _one_line(capsys)
    assert "Read-only file system" in line and str(tmp_path) in line
