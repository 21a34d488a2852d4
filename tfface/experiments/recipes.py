"""Load an experiment recipe for any method: ``tfface train RECIPE [--epochs N] [--set key=value ...]``.

A recipe is one YAML file with a ``method:`` key (see :data:`tfface.experiments.registry.METHODS`);
the rest is read strictly into that method's recipe dataclass (unknown keys are errors naming the
file and the dotted key). Steps, in order:

1. ``RECIPE`` is a path, or the bare name of a recipe shipped with the package
   (``tfface train recognizer_small`` finds ``tfface/recipes/recognizer_small.yaml`` from any folder).
2. Relative input paths inside the file (the method's ``path_keys``, e.g. a pretrained recipe or a
   data folder) resolve relative to the recipe file's folder.
3. Command-line overrides apply to the raw mapping (values parsed as YAML, so ``--set
   train.learning_rate=0.05`` is a float and ``--set data.split.factors=[8,4]`` a list); paths
   given on the command line stay relative to the working directory. ``--epochs N`` is
   ``--set <the method's epochs key>=N``.
4. The result is validated as a whole (field types, ranges, and with ``check`` a trial build of the
   model), before any data is rendered or any model trained, so the
   schedule (built from ``train.epochs``) and the record (``history.json`` holds the recipe as
   trained) always agree with what ran.

Example:
  >>> from tfface.experiments.recipes import load_experiment
  >>> method, recipe, source = load_experiment("recognizer_small", overrides=["train.learning_rate=0.05"], epochs=2)
  >>> method.name, recipe.train.epochs, recipe.train.learning_rate
  ('recognizer', 2, 0.05)
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from tfface.config import from_dict, load_yaml
from tfface.embed.dlib_face import MODEL_NAMES
from tfface.errors import ConfigError
from tfface.experiments.registry import Method, get_method
from tfface.presets import preset_name

__all__ = ["PACKAGED_RECIPES", "apply_override", "find_recipe", "load_experiment", "packaged_recipes"]

PACKAGED_RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def packaged_recipes() -> list[str]:
    """Names of the recipes shipped with the package."""
    return sorted(p.stem for p in PACKAGED_RECIPES.glob("*.yaml"))


def find_recipe(ref: str | os.PathLike) -> Path:
    """A recipe path: ``ref`` itself when it is a file, else a packaged recipe of that name."""
    p = Path(ref)
    if p.is_file():
        return p
    name = p.name if p.suffix in (".yaml", ".yml") else p.name + ".yaml"
    packaged = PACKAGED_RECIPES / name
    if packaged.is_file() and (len(p.parts) == 1 or p.parent.name == "recipes"):
        return packaged
    raise ConfigError(f"recipe not found: {ref} (a YAML file, or one of the packaged recipes: "
                      f"{', '.join(packaged_recipes())})")


def _get(data: dict, dotted: str) -> Any:
    cur: Any = data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _set(data: dict, dotted: str, value: Any, where: str) -> None:
    parts = dotted.split(".")
    cur = data
    for i, part in enumerate(parts[:-1]):
        nxt = cur.setdefault(part, {})
        if nxt is None:
            nxt = cur[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{where}: {'.'.join(parts[:i + 1])} is not a section (it holds {nxt!r})")
        cur = nxt
    cur[parts[-1]] = value


def apply_override(data: dict, override: str, where: str = "--set") -> None:
    """``key.sub=value`` into ``data`` in place (``value`` parsed with ``yaml.safe_load``)."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{where} {override!r}: expected KEY=VALUE with a dotted KEY, e.g. train.epochs=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where} {key}: value {raw!r} is not valid YAML ({e})") from None
    if key == "method":
        raise ConfigError(f"{where} method: the method is fixed by the recipe file")
    _set(data, key, value, f"{where} {key}")


def _resolve_paths(data: dict, method: Method, folder: Path) -> None:
    for key in method.path_keys:
        value = _get(data, key)
        if isinstance(value, str) and value and not Path(value).is_absolute() and preset_name(value) is None \
                and value not in MODEL_NAMES:
            _set(data, key, str(folder / value), key)


def load_experiment(ref: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (),
                    epochs: int | None = None, check: bool = False) -> tuple[Method, Any, Path]:
    """``(method, recipe, recipe path)`` for ``ref`` with the overrides applied (see the module docstring).

    ``check``: also run the method's cheap checks (a recognizer's model is built once on its input size),
    so everything in the recipe is validated before any work; ``tfface train`` does."""
    path = find_recipe(ref)
    raw = load_yaml(path)
    if "method" not in raw:
        raise ConfigError(f"{path}: no 'method:' key (one of: recognizer, r3an, ddl)")
    method = get_method(raw["method"], where=f"{path}: method")
    data = copy.deepcopy(raw)
    _resolve_paths(data, method, path.resolve().parent)
    for o in overrides:
        apply_override(data, o)
    if epochs is not None:
        apply_override(data, f"{method.epochs_key}={int(epochs)}", where="--epochs")
    try:
        recipe = from_dict(method.recipe_class(), data)
        if check:
            method.check(recipe)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return method, recipe, path
