"""The manifest of a saved :class:`~tfface.retrieval.Index`: what it holds, checksums, version checks.

An index directory holds ``manifest.json`` and the files it lists, each with its SHA-256 and size::

    {"format": "tfface-retrieval-index", "format_version": 1, "tfface_version": "0.1.0",
     "dim": 256, "metric": "cosine", "backend": "scann", "count": 1000000, ...,
     "files": {"vectors.npy": {"sha256": "...", "bytes": 1024000128}, ...}}

:func:`read_manifest` refuses a directory written with a newer (or unknown) format version, and
:func:`verify_files` one whose files are missing or do not match their checksums, each with a
:class:`~tfface.errors.DataError` naming the directory or file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tfface import __version__
from tfface.errors import DataError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "IncompatibleIndexError",
    "file_entry",
    "read_manifest",
    "sha256_file",
    "verify_files",
    "write_manifest",
]

FORMAT = "tfface-retrieval-index"
FORMAT_VERSION = 1
"""Bump when a change to the directory layout cannot be read by older code."""
READABLE_VERSIONS = (1,)
MANIFEST_NAME = "manifest.json"
_REQUIRED = ("format", "format_version", "tfface_version", "dim", "metric", "backend", "count", "files")


class IncompatibleIndexError(DataError):
    """The index directory was written by an incompatible tfface (another format version)."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``chunk``-byte pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """``{"sha256": ..., "bytes": ...}`` of one file."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_manifest(directory: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Checksum every file under ``directory`` and write ``manifest.json`` with ``fields``.

    Returns the manifest written. Format name, format version and the tfface version are added here.
    """
    files = {
        p.relative_to(directory).as_posix(): file_entry(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "tfface_version": __version__, **fields}
    manifest["files"] = files
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Read and check ``directory/manifest.json``; raise ``DataError`` / ``IncompatibleIndexError``."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise DataError(f"{directory}: index directory not found")
    if not path.is_file():
        raise DataError(f"{path}: missing; {directory} is not a tfface index directory (or a partial one)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable manifest ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not a tfface index manifest (format {manifest.get('format') if isinstance(manifest, dict) else None!r})")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise IncompatibleIndexError(
            f"{path}: index format version {version!r} written by tfface {manifest.get('tfface_version')!r}; "
            f"this tfface {__version__} reads format version(s) {list(READABLE_VERSIONS)}"
            + ("; upgrade tfface to read it" if newer else "; rebuild the index from its features")
        )
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise DataError(f"{path}: manifest lacks the fields {missing}")
    if not isinstance(manifest["files"], dict):
        raise DataError(f"{path}: manifest field 'files' must be a mapping")
    return manifest


def verify_files(directory: str | Path, manifest: dict[str, Any], *, checksums: bool = True) -> None:
    """Raise ``DataError`` naming the first listed file that is missing, of the wrong size or checksum."""
    directory = Path(directory)
    for rel, entry in sorted(manifest["files"].items()):
        path = directory / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise DataError(f"{directory / MANIFEST_NAME}: file entry {rel!r} points outside the index")
        if not path.is_file():
            raise DataError(f"{path}: listed in the manifest but missing (partial or damaged index directory)")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise DataError(f"{path}: size {size} bytes, manifest says {entry.get('bytes')} (damaged or partial file)")
        if checksums and sha256_file(path) != entry.get("sha256"):
            raise DataError(f"{path}: SHA-256 checksum does not match the manifest (damaged file)")
