"""Methods by name: what ``tfface train RECIPE`` needs to run any method from its recipe's ``method:`` key.

Each entry names (as ``module:attribute``, imported only when used, so ``tfface --help`` stays instant)
the method's recipe dataclass (its config), its model builder, and the runner that trains it from a
recipe and writes its artefacts (data, evaluation and export included). ``path_keys`` are the dotted
recipe keys holding input paths, which resolve relative to the recipe file; ``epochs_key`` is what
``--epochs`` sets.

Adding a method (WSGAN, FTL, GANFaces): a folder ``tfface/methods/<name>/`` with its ``config.py``
(a recipe dataclass with ``method: Literal["<name>"]``), a runner in ``tfface/experiments/train_<name>.py``
and one :class:`Method` line in :data:`METHODS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from tfface.errors import ConfigError

__all__ = ["METHODS", "Method", "get_method"]


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Method:
    name: str
    recipe: str  # "module:RecipeClass" (a frozen dataclass, read strictly)
    builder: str  # "module:function" building the Keras model
    runner: str  # "module:function(recipe, out_dir=None, verbose=...) -> dict" (the summary)
    paper: str
    path_keys: tuple[str, ...] = ()
    epochs_key: str = "train.epochs"
    checker: str | None = None  # "module:function(recipe)": cheap checks beyond the dataclasses (a model build)

    def recipe_class(self) -> type:
        return _resolve(self.recipe)

    def check(self, recipe) -> None:
        """Everything that can be checked before any data is rendered or read."""
        if self.checker:
            _resolve(self.checker)(recipe)

    def run(self, recipe, out_dir=None, verbose: int | str = "auto") -> dict:
        return _resolve(self.runner)(recipe, out_dir=out_dir, verbose=verbose)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("recognizer", "tfface.methods.recognizer.config:RecognizerRecipe",
           "tfface.methods.recognizer:build_recognizer", "tfface.experiments.train_recognizer:run_recipe",
           "ArcFace/CosFace margin training (the old and new models of every other method)",
           path_keys=("data.path",), checker="tfface.training.recognizer:check_model"),
    Method("r3an", "tfface.methods.r3an.config:R3ANRecipe", "tfface.methods.r3an:R3AN",
           "tfface.experiments.train_r3an:run_recipe",
           "R3AN: feature translation by reconstruction and representation (Chen et al., ICCV 2019)",
           path_keys=("data.old", "data.new", "data.path", "data.real.path")),
    Method("ddl", "tfface.methods.ddl.config:DDLRecipe", "tfface.methods.ddl:build_ddl",
           "tfface.experiments.train_ddl:run_recipe",
           "DDL: distribution distillation loss (Huang et al., ECCV 2020)",
           path_keys=("pretrained.embedder", "pretrained.recipe", "data.path", "data.split.attributes")),
    Method("wsgan", "tfface.methods.wsgan.config:WSGANRecipe", "tfface.methods.wsgan:WSGAN",
           "tfface.experiments.train_wsgan:run_recipe",
           "WSGAN: weak-to-strong modality matching by a sampled conditional generator (He et al., AAAI 2019)",
           epochs_key="train.iterations"),
    Method("ftl", "tfface.methods.ftl.config:FTLRecipe", "tfface.methods.ftl:FTLNetworks",
           "tfface.experiments.train_ftl:run_recipe",
           "FTL: feature transfer to under-represented identities (Yin et al., CVPR 2019)",
           epochs_key="train.pretrain_epochs"),
    Method("ganfaces", "tfface.methods.ganfaces.config:GANFacesRecipe", "tfface.methods.ganfaces:GANFaces",
           "tfface.experiments.train_ganfaces:run_recipe",
           "GANFaces: photorealistic faces of new identities from 3DMM renders (Gecer et al., ECCV 2018)",
           path_keys=("embedder.path",), epochs_key="train.iterations"),
)}


def get_method(name: Any, where: str = "method") -> Method:
    if name not in METHODS:
        raise ConfigError(f"{where}: unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]
