"""Recipes: one YAML file per experiment, loaded into typed dataclasses.

``recipes/recognizer_small.yaml`` and ``recipes/recognizer_large.yaml`` train the demo's "old" and
"new" recognizers on the built-in faces. Unknown keys are errors naming the key.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Literal

from tfface.config import check_range, load_config
from tfface.data.synthetic import FaceDataConfig
from tfface.errors import ConfigError


@dataclass(frozen=True)
class DataSpec:
    """Training data: the built-in faces, or real data from a path."""

    source: Literal["builtin", "folder", "rec", "tfrecord", "npz"] = "builtin"
    builtin: FaceDataConfig = field(default_factory=lambda: FaceDataConfig(num_identities=200,
                                                                          images_per_identity=20,
                                                                          image_size=64))
    path: str | None = None  # for folder / rec / tfrecord / npz
    image_size: int = 64  # real data is resized to this

    def __post_init__(self):
        if self.source != "builtin" and not self.path:
            raise ConfigError(f"path: required when source is {self.source!r}")
        check_range("image_size", self.image_size, 16, 1024)


@dataclass(frozen=True)
class ModelSpec:
    backbone: str = "mobilenet_v2"
    backbone_kwargs: dict = field(default_factory=dict)
    embedding_dim: int = 128
    margin: str = "arcface"
    margin_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        from tfface.nets import BACKBONES, MARGIN_HEADS

        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone: unknown {self.backbone!r}; known: {', '.join(sorted(BACKBONES))}")
        if self.margin not in MARGIN_HEADS:
            raise ConfigError(f"margin: unknown {self.margin!r}; known: {', '.join(sorted(MARGIN_HEADS))}")
        check_range("embedding_dim", self.embedding_dim, 1, 65_536)


@dataclass(frozen=True)
class TrainSpec:
    epochs: int = 10
    batch_size: int = 64  # global batch, split over replicas
    optimizer: Literal["sgd", "adamw"] = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    schedule: Literal["cosine", "constant"] = "cosine"
    augment: bool = True
    mixed_precision: bool = False
    profile_batch: int = 0  # >0: write a profiler trace of this batch to TensorBoard
    seed: int = 0

    def __post_init__(self):
        check_range("epochs", self.epochs, 1, 100_000)
        check_range("batch_size", self.batch_size, 2, 65_536)
        check_range("learning_rate", self.learning_rate, 0, 10, low_open=True)
        check_range("momentum", self.momentum, 0, 0.999)
        check_range("weight_decay", self.weight_decay, 0, 1)
        check_range("warmup_epochs", self.warmup_epochs, 0, self.epochs)
        check_range("profile_batch", self.profile_batch, 0)


@dataclass(frozen=True)
class EvalSpec:
    """Held-out identities (disjoint from training) and distractors for the evaluation."""

    identities: int = 100
    images_per_identity: int = 6
    identity_offset: int = 100_000  # far from the training identities' range
    distractors: int = 2000
    distractor_offset: int = 200_000
    pairs: int = 3000  # verification pairs of each kind (same / different)
    seed: int = 1

    def __post_init__(self):
        check_range("identities", self.identities, 2, 10_000_000)
        check_range("images_per_identity", self.images_per_identity, 2, 100_000)
        check_range("distractors", self.distractors, 0, 100_000_000)
        check_range("pairs", self.pairs, 1, 100_000_000)


@dataclass(frozen=True)
class RecognizerRecipe:
    name: str = "recognizer"
    method: Literal["recognizer"] = "recognizer"
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    output_dir: str | None = None

    @property
    def out_dir(self) -> str:
        return self.output_dir or os.path.join("runs", self.name)

    def replace(self, **changes) -> RecognizerRecipe:
        return dataclasses.replace(self, **changes)


def load_recipe(path: str | os.PathLike) -> RecognizerRecipe:
    return load_config(RecognizerRecipe, path)
