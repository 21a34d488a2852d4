"""Atomic writes: write to a temporary path beside the target, then rename.

An interrupted run never leaves a half-written file or directory, and a file that
already existed stays as it was until the new one is complete.

Temporaries have recognisable names that carry the writer's process id::

    .<name>.tfface-tmp-<pid>-<random><suffix>    the file or directory being written
    .<name>.tfface-old-<pid>                     an existing directory moved aside for the swap

A run killed outright (SIGKILL, SIGBUS, power loss) cannot clean up after itself, so every write to a
target first removes that target's temporaries whose process is no longer alive
(:func:`clean_stale_temporaries`); an ``old`` directory whose target is missing (the run died between
the two renames) is renamed back into place instead.

:func:`check_free_space` lets writers that know their output size refuse up front with
:class:`InsufficientSpaceError` instead of failing half-way (or, for a memory-mapped output, dying of SIGBUS).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "InsufficientSpaceError",
    "atomic_dir",
    "atomic_path",
    "check_free_space",
    "clean_stale_temporaries",
    "free_bytes",
    "temp_dir",
]

TMP_TAG = "tfface-tmp"
OLD_TAG = "tfface-old"


class InsufficientSpaceError(OSError):
    """Not enough free disk space for an output of known size (``errno`` ENOSPC, ``filename`` the output)."""

    def __init__(self, path: str | os.PathLike, needed: int, free: int) -> None:
        super().__init__(errno.ENOSPC, f"not enough free disk space: needs {needed} bytes, {free} bytes free",
                         str(path))
        self.needed = needed
        self.free = free


def free_bytes(path: str | os.PathLike) -> int:
    """Free bytes (for this user) on the file system holding ``path`` (an existing directory)."""
    return shutil.disk_usage(path).free


def check_free_space(path: str | os.PathLike, needed: int) -> None:
    """Raise :class:`InsufficientSpaceError` naming ``path`` unless ``needed`` bytes fit beside it."""
    target = Path(path)
    where = target if target.is_dir() else target.parent
    while not where.is_dir() and where != where.parent:  # the folder may not exist yet
        where = where.parent
    free = free_bytes(where)
    if needed > free:
        raise InsufficientSpaceError(target, int(needed), int(free))


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _naming_target(err: OSError, target: Path, tmp: Path) -> OSError | None:
    """A disk-full error of a write into ``tmp`` (a nameless one, or one naming the temporary), renamed
    to name ``target``, the path the user asked for; ``None`` for any other error."""
    if isinstance(err, InsufficientSpaceError) or err.errno not in _FULL:
        return None
    if err.filename is not None and not str(err.filename).startswith(str(tmp)):
        return None
    return OSError(err.errno, err.strerror or os.strerror(err.errno), str(target))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` left by writers that are no longer running; return what was removed.

    An ``old`` directory of a dead writer is renamed back onto ``path`` when ``path`` is missing (the
    writer died between moving the old version aside and moving the new one in). Temporaries of live
    processes are left alone; one that cannot be removed is reported with a warning.
    """
    target = Path(path)
    parent = target.parent
    if not parent.is_dir():
        return []
    name = re.escape(target.name)
    pattern = re.compile(rf"^\.{name}\.(?:{TMP_TAG}-(\d+)-.+|{OLD_TAG}-(\d+))$")
    removed = []
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return []
    for p in entries:
        m = pattern.match(p.name)
        if not m:
            continue
        pid = int(m.group(1) or m.group(2))
        if _pid_alive(pid):
            continue
        try:
            if m.group(2) is not None and not target.exists() and p.is_dir():
                os.replace(p, target)  # put the previous version back
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError as err:
            warnings.warn(f"{p}: a temporary left by process {pid} (no longer running) could not be removed "
                          f"({err.strerror or err})", stacklevel=2)
    return removed


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.{TMP_TAG}-{os.getpid()}-"


def temp_dir(path: str | os.PathLike, tag: str = "") -> Path:
    """A new temporary directory beside ``path`` with a recognisable name (``tag`` is included in it).

    The caller removes it; one left by a killed run is removed by :func:`clean_stale_temporaries`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(target)
    return Path(tempfile.mkdtemp(prefix=_tmp_prefix(target) + (f"{tag}-" if tag else ""), dir=target.parent))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary file path in ``path``'s folder; rename it onto ``path`` on success.

    ``suffix`` lets writers that insist on an extension (``np.savez`` adds ``.npz``) keep it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(target)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(target), suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp_path, target)
    except OSError as err:
        tmp_path.unlink(missing_ok=True)
        named = _naming_target(err, target, tmp_path)
        if named is None:
            raise
        raise named from err
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; it replaces ``path`` on success.

    An existing ``path`` is moved aside first and removed only once the new directory is in place.
    """
    target = Path(path)
    tmp = temp_dir(target)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.{OLD_TAG}-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        named = _naming_target(err, target, tmp)
        if named is None:
            raise
        raise named from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
