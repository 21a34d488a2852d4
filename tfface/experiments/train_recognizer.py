"""Recognizer runs: ``tfface train recipes/recognizer_*.yaml``, and the trained old/new models other methods use.

:func:`run_recipe` trains one recognizer recipe (:func:`tfface.training.recognizer.train_recipe`).
:func:`embedder_for` gives the embedder a DDL or R3AN recipe refers to: a saved ``.keras`` file, or
a recognizer recipe, whose ``<output_dir>/embedder.keras`` is reused when the ``history.json`` beside
it records the same recipe, and which is trained first otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from tfface.errors import ConfigError
from tfface.methods.recognizer.config import RecognizerRecipe

__all__ = ["embedder_for", "recorded_recipe_difference", "run_recipe"]


def run_recipe(recipe: RecognizerRecipe, out_dir: str | os.PathLike | None = None, verbose: int | str = "auto"
               ) -> dict:
    from tfface.training.recognizer import load_training_data, train_recognizer

    images, labels = load_training_data(recipe)
    return train_recognizer(recipe, images, labels, out_dir=out_dir, verbose=verbose).summary()


def recorded_recipe_difference(out_dir: str | os.PathLike, recipe) -> str | None:
    """``None`` when ``<out_dir>/history.json`` records ``recipe`` (its ``eval`` and ``output_dir`` aside,
    which do not change the model); else the first differing key (or why there is no record)."""
    hist = Path(out_dir) / "history.json"
    if not hist.is_file():
        return f"no {hist}"
    try:
        recorded = json.loads(hist.read_text()).get("recipe")
    except (OSError, ValueError, AttributeError) as e:
        return f"{hist} is unreadable ({e})"
    from tfface.training.resume import first_difference, trained_part

    return first_difference(trained_part(recorded or {}), trained_part(recipe), labels=("recorded", "asked"))


def embedder_for(ref: str | os.PathLike, fallback_dir: str | os.PathLike | None = None, epochs: int | None = None,
                 verbose: int | str = "auto", where: str = "pretrained"):
    """``(keras embedder, recognizer recipe or None, where it came from)`` for ``ref``.

    ``ref`` is a saved embedder (``.keras``), a shipped preset (``preset:builtin-new``: its model and the
    recipe that trained it) or a recognizer recipe (a path or a packaged name).
    A recipe's model is reused from ``<its output_dir>/embedder.keras`` when that run recorded the
    same recipe (``epochs`` overrides its epochs); otherwise it is trained into ``fallback_dir``
    (default: the recipe's own output_dir), or reused from there on a rerun. A model in the way that
    another recipe trained is an error naming the differing key, never silently reused."""
    from tfface import presets
    from tfface.experiments.recipes import load_experiment
    from tfface.keras_files import load_keras_file
    from tfface.training.recognizer import train_recipe

    ref = str(ref)
    name = presets.preset_name(ref)
    if name is not None:
        try:
            return presets.load_model(name), presets.recipe(name), ref
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    if ref.endswith(".keras"):
        if not Path(ref).is_file():
            raise ConfigError(f"{where}: {ref} not found")
        from tfface.keras_files import load_keras_file

        return load_keras_file(ref, what=where), None, ref
    method, recipe, _ = load_experiment(ref)
    if method.name != "recognizer":
        raise ConfigError(f"{where}: {ref} is a {method.name} recipe; expected a recognizer recipe or a .keras file")
    if epochs:
        recipe = recipe.replace(train=dataclasses.replace(recipe.train, epochs=int(epochs)))
    candidates = [Path(recipe.out_dir)] + ([Path(fallback_dir)] if fallback_dir else [])
    for d in candidates:
        if (d / "embedder.keras").is_file():
            diff = recorded_recipe_difference(d, recipe)
            if diff is None:
                return load_keras_file(d / "embedder.keras", what=where), recipe, str(d / "embedder.keras")
            if d == candidates[-1]:
                raise ConfigError(f"{where}: {d / 'embedder.keras'} was trained from another recipe than {ref} "
                                  f"({diff}); remove that folder or choose another output folder")
    target = candidates[-1]
    res = train_recipe(recipe, out_dir=target, verbose=verbose)
    return res.embedder, recipe, str(target / "embedder.keras")
