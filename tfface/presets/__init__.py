"""Pretrained recognizers that ship with the package: no download, no training.

>>> from tfface import presets
>>> presets.available()                     # doctest: +SKIP
['builtin-new', 'builtin-old']
>>> emb = presets.load("builtin-new")       # an Embedder (preprocessing ``tfface64``)  # doctest: +SKIP

Each preset is two files in this folder: ``<name>.weights.npz`` (the embedder's weights, float16,
read with ``allow_pickle=False``) and ``<name>.json`` (the recipe that trained it, its data config,
preprocessing, metrics, the machine and the command that produced it). ``preset:NAME`` names one as a
model wherever a recipe or ``tfface export model`` takes a model path. The network is rebuilt from the
recipe's model section by the package's own code, so loading deserialises no model file.
"""

from tfface.presets.store import (
    PRESET_DIR,
    PRESET_PREFIX,
    available,
    info,
    load,
    load_model,
    pack,
    preset_name,
    recipe,
)

__all__ = ["PRESET_DIR", "PRESET_PREFIX", "available", "info", "load", "load_model", "pack", "preset_name", "recipe"]
