"""File-system faults through the CLI end in one line naming the path and the cause (exit 2), and leave
nothing half-written: an unwritable path (a folder under /proc, which even root cannot create) and a
full disk (ENOSPC, simulated in the writer)."""

from __future__ import annotations

import errno

import numpy as np

from tfface.cli import main

RENDER = ["render", "--identities", "1", "--images", "1", "--size", "64"]


def _one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("render ")]
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_unwritable_output_path_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TFFACE_CACHE", str(tmp_path / "cache"))
    assert main([*RENDER, "-o", "/proc/tfface-test/faces.npz"]) == 2
    line = _one_line(capsys)
    assert "/proc/tfface-test" in line


def test_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TFFACE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "faces.npz").write_bytes(b"the previous version")

    def full_disk(file, *args, **kwargs):
        with open(file, "wb") as f:  # half a file, then the disk is full
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(file))

    monkeypatch.setattr(np, "savez", full_disk)
    assert main([*RENDER, "-o", str(out / "faces.npz")]) == 2
    line = _one_line(capsys)
    assert "No space left on device" in line
    assert (out / "faces.npz").read_bytes() == b"the previous version"  # the old output is untouched
    assert [p.name for p in out.iterdir()] == ["faces.npz"]  # no temporary file left behind
