"""Describe the machine a benchmark ran on, for its JSON record."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gb,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }
    import numpy as np

    info["numpy"] = np.__version__
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    return info


def describe(info: dict) -> str:
    """One line for docs: '2-core Intel Xeon ..., 24 GiB, no GPU'."""
    gpus = info.get("gpus") or []
    return f"{info['cores']}-core {info['cpu']}, {info['memory_gib']} GiB, {', '.join(gpus) if gpus else 'no GPU'}"


def provenance_line(result: dict) -> str:
    """The last line of a benchmark's markdown: the machine and the command that produced the figures."""
    m = result.get("machine") or {}
    where = describe(m) if {"cores", "cpu", "memory_gib"} <= set(m) else "machine not recorded"
    return f"Machine: {where}, TensorFlow {m.get('tensorflow')}; command `{result.get('command')}`."
