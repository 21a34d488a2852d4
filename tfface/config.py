"""Typed configs from YAML: dataclasses filled strictly from plain data.

Unknown keys are errors naming the dotted key (``train.learnin_rate``), values are checked against the
field's type, lists become tuples where the field is a tuple, and nested dataclasses are built
recursively. YAML is read with ``yaml.safe_load`` only.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tfface.errors import ConfigError

T = TypeVar("T")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {args}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown or ill-typed keys raise ConfigError naming them."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]!s} (known keys{' of ' + where if where else ''}: {sorted(fields)})"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}.{e}" if where else str(e)) from e
    except TypeError as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from e


def preset_config(cls: type[T], presets: dict[str, dict], name: str, where: str, **changes) -> T:
    """``cls`` from a named starting point: ``presets[name]``'s values, then ``changes`` (a config's
    ``preset`` classmethod). An unknown name is an error naming ``<where>.preset`` and the known ones."""
    if name not in presets:
        raise ConfigError(f"{where}.preset: unknown {name!r}; known: {', '.join(presets)}")
    return cls(**{**presets[name], **changes})


def section_with_preset(cls: type[T], presets: dict[str, dict], section: dict, where: str, default: str,
                        **changes) -> T:
    """``cls`` from a recipe section that may name a ``preset``: the preset's values, the section's own
    fields on top (each checked strictly by :func:`from_dict`), then ``changes`` (values the recipe sets
    from its data, e.g. the feature sizes)."""
    fields = dict(section or {})
    name = fields.pop("preset", default)
    if name not in presets:
        raise ConfigError(f"{where}.preset: unknown {name!r}; known: {', '.join(presets)}")
    parsed = from_dict(cls, {**presets[name], **fields}, where=where)  # checked on top of the preset's values
    return preset_config(cls, presets, name, where, **{k: getattr(parsed, k) for k in fields}, **changes)


def check_range(key: str, value: Any, low: float | None = None, high: float | None = None,
                low_open: bool = False) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``low <= value <= high`` (``low < value`` with
    ``low_open``). Upper bounds are where a larger value can only be a mistake (it would not fit in
    memory or in a lifetime on any machine), so a typo fails before any work starts."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if v != v or (low is not None and (v <= low if low_open else v < low)) or (high is not None and v > high):
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"<= {high:g}"
        raise ConfigError(f"{key}: must be {' and '.join(x for x in (lo, hi) if x)}, got {value!r}")


def to_dict(cfg: Any) -> Any:
    """A dataclass as plain data (tuples as lists), ready for YAML or JSON."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, tuple | list):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def load_yaml(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    return data


def load_config(cls: type[T], path: str | os.PathLike) -> T:
    """Load a YAML file into dataclass ``cls``; errors name the file and the key."""
    try:
        return from_dict(cls, load_yaml(path))
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
