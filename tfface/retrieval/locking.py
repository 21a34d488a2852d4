"""An exclusive lock per index directory, for writers (``tfface index add|delete|build``, gallery upgrades).

An index update is load-modify-save: two writers that interleave both succeed and one's changes are
lost. Writers therefore hold :func:`index_lock` across the whole update. The lock is a ``filelock`` on
``<index>.lock`` *beside* the directory (the directory itself is replaced by an atomic rename on every
save, so a lock inside it would not survive). The lock file is left in place after use; removing it
would race with a writer waiting on it. Readers (``search``, ``export``, ``info``) take no lock: a save
never changes a complete directory in place.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from tfface.errors import ConfigError, DataError

__all__ = ["DEFAULT_LOCK_TIMEOUT", "IndexLockedError", "index_lock", "lock_path"]

DEFAULT_LOCK_TIMEOUT = 60.0  # seconds a writer waits for another one to finish


class IndexLockedError(DataError):
    """Another writer held the index's lock for longer than the timeout."""


def lock_path(index_dir: str | os.PathLike) -> Path:
    """``<index>.lock``, beside the index directory."""
    target = Path(os.path.abspath(index_dir))
    return target.with_name(target.name + ".lock")


@contextlib.contextmanager
def index_lock(index_dir: str | os.PathLike, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[Path]:
    """Hold the exclusive lock of ``index_dir``, waiting at most ``timeout`` seconds for it.

    Raises :class:`IndexLockedError` (a :class:`DataError`) naming the index and the lock file when
    another writer holds it longer; an ``OSError`` when the lock file cannot be created at all.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 <= timeout < math.inf:
        raise ConfigError(f"lock timeout: expected a number of seconds >= 0, got {timeout!r}")
    path = lock_path(index_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Create it here first: filelock retries a lock file it cannot create until the timeout, which
    # would read as "another writer holds it" for what is really a read-only or missing folder.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o666))
    lock = FileLock(path, timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise IndexLockedError(
            f"{index_dir}: another writer holds the index lock {path} (waited {timeout:g} s); "
            "try again once it has finished (or wait longer with --lock-timeout)"
        ) from None
    try:
        yield path
    finally:
        lock.release()
