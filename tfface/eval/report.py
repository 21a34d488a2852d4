"""Reports: JSON files of results (atomic, NaN -> null) and markdown tables."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfface.atomic import atomic_path
from tfface.errors import DataError

__all__ = ["markdown_table", "to_jsonable", "write_json"]


def to_jsonable(obj: Any, _where: str = "obj") -> Any:
    """Convert ``obj`` to plain JSON types.

    Objects with a ``to_dict()`` (the result classes) use it; other dataclasses become dicts of
    their fields; numpy arrays and scalars become lists and numbers; tuples and sets become lists;
    paths become strings; dict keys become strings; NaN and +-Inf become ``None``.
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict(), _where)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_jsonable(getattr(obj, f.name), f"{_where}.{f.name}") for f in dataclasses.fields(obj)
        }
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v, f"{_where}[{i}]") for i, v in enumerate(obj.tolist())]
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v, f"{_where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v, f"{_where}[{i}]") for i, v in enumerate(obj)]
    raise DataError(f"{_where}: cannot be written as JSON (type {type(obj).__name__})")


def write_json(obj: Any, path: str | os.PathLike, indent: int = 2) -> Path:
    """Write ``obj`` (results, dataclasses, numpy values, dicts of them) as JSON to ``path``, atomically.

    NaN and Inf become ``null``; the file is strict JSON. Returns ``path``.
    """
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False, sort_keys=False)
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return target


def _cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float | np.floating):
        return "n/a" if not math.isfinite(value) else format(float(value), floatfmt)
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], floatfmt: str = ".4f") -> str:
    """A GitHub markdown table of ``rows`` with the given ``columns`` in order.

    Floats use ``floatfmt``; ``None``, NaN and Inf print as ``n/a``; a column missing from a row
    prints as an empty cell; ``|`` in a cell is escaped.
    """
    if isinstance(columns, str) or not columns:
        raise DataError(f"columns: expected a non-empty list of column names, got {columns!r}")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(f"rows[{i}]: expected a dict, got {type(row).__name__}")
    header = [_cell(str(c), floatfmt) for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append(
            "| " + " | ".join("" if c not in row else _cell(row[c], floatfmt) for c in columns) + " |"
        )
    return "\n".join(lines) + "\n"
