"""The DDL recipe: a pretrained recognizer, fine-tuning data split into easy and hard, the model,
the loss (:class:`tfface.losses.ddl.DDLLossConfig`), the schedule and the evaluation.

``recipes/ddl_resolution.yaml`` and ``recipes/ddl_pose.yaml`` are read strictly into :class:`DDLRecipe`
(unknown keys are errors naming the dotted key); ``tfface train recipes/ddl_resolution.yaml`` runs one
(:func:`tfface.training.ddl.train_ddl_recipe`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from tfface.config import check_range, load_config
from tfface.data.synthetic import FaceDataConfig
from tfface.errors import ConfigError
from tfface.losses.ddl import DDLLossConfig
from tfface.methods.ddl.data import STUDENT_PAIRS

__all__ = ["DDLDataSpec", "DDLEvalSpec", "DDLModelSpec", "DDLRecipe", "DDLTrainSpec", "PretrainedSpec",
           "SplitSpec", "load_ddl_recipe"]


@dataclass(frozen=True)
class SplitSpec:
    """How easy and hard subsets are defined (see :mod:`tfface.methods.ddl.data`)."""

    kind: Literal["resolution", "pose"] = "resolution"
    factors: tuple[int, ...] = (8, 4)  # resolution: one student per factor, hardest first
    easy_max_yaw: float = 10.0  # pose: easy |yaw| < this (paper: 10 degrees)
    hard_min_yaw: float = 45.0  # pose: hard |yaw| > this (paper: 45 degrees)
    attributes: str | None = None  # real data, pose: CSV with columns path, yaw
    student_pairs: str = "easy-hard"
    drop_unpaired: bool = True  # leave identities without a positive pair out of the pair draws

    def __post_init__(self):
        if self.student_pairs not in STUDENT_PAIRS:
            raise ConfigError(f"student_pairs: {self.student_pairs!r} is not one of {list(STUDENT_PAIRS)}")
        if self.kind == "resolution" and (not self.factors or any(f < 2 for f in self.factors)):
            raise ConfigError(f"factors: need integers >= 2 for the resolution split, got {list(self.factors)}")
        if self.kind == "pose" and not 0 < self.easy_max_yaw <= self.hard_min_yaw:
            raise ConfigError(f"easy_max_yaw: need 0 < easy_max_yaw <= hard_min_yaw, got {self.easy_max_yaw}, "
                              f"{self.hard_min_yaw}")


@dataclass(frozen=True)
class PretrainedSpec:
    embedder: str | None = None  # a saved embedder (.keras); used when it exists
    recipe: str | None = "recognizer_small.yaml"  # otherwise trained from this recognizer recipe (a path or a packaged name)
    epochs: int | None = None  # override the recognizer recipe's epochs

    def __post_init__(self):
        if not self.embedder and not self.recipe:
            raise ConfigError("pretrained: give embedder (a .keras file) or recipe (a recognizer recipe)")


@dataclass(frozen=True)
class DDLDataSpec:
    """Fine-tuning data: built-in faces (identities disjoint from pretraining by ``identity_offset``)
    or real images from ``path`` (an image folder, .rec, TFRecord or rendered .npz)."""

    source: Literal["builtin", "folder", "rec", "tfrecord", "npz"] = "builtin"
    builtin: FaceDataConfig = field(default_factory=lambda: FaceDataConfig(
        num_identities=60, images_per_identity=10, image_size=64, identity_offset=50_000))
    path: str | None = None
    image_size: int = 64
    split: SplitSpec = field(default_factory=SplitSpec)

    def __post_init__(self):
        if self.source != "builtin" and not self.path:
            raise ConfigError(f"path: required when source is {self.source!r}")
        check_range("image_size", self.image_size, 16, 1024)


@dataclass(frozen=True)
class DDLModelSpec:
    margin: str = "arcface"
    margin_kwargs: dict = field(default_factory=lambda: {"s": 30.0, "m": 0.3})
    classify: Literal["all", "identities"] = "all"
    init_centres: bool = True  # head centres = class-mean embeddings of the pretrained model (A10)
    sync_batchnorm: bool | None = None


@dataclass(frozen=True)
class DDLTrainSpec:
    b: int = 16  # pairs and identity-distinct samples per distribution (global)
    steps: int = 200
    epochs: int = 4  # the steps are split into this many Keras epochs (logging, callbacks)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_drop: float = 0.5  # divide the learning rate by 10 at this fraction of the steps (0: never)
    flip: bool = True
    baseline: bool = False  # the margin loss alone on the same batches (no DDL)
    seed: int = 0

    def __post_init__(self):
        check_range("b", self.b, 2, 4096)
        check_range("steps", self.steps, 1, 10_000_000)
        check_range("momentum", self.momentum, 0, 0.999)
        check_range("weight_decay", self.weight_decay, 0, 1)
        if self.steps < 1 or self.epochs < 1 or self.epochs > self.steps:
            raise ConfigError(f"steps, epochs: need 1 <= epochs <= steps, got {self.steps}, {self.epochs}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate: must be > 0, got {self.learning_rate}")
        if not 0 <= self.lr_drop < 1:
            raise ConfigError(f"lr_drop: must be in [0, 1), got {self.lr_drop}")


@dataclass(frozen=True)
class DDLEvalSpec:
    """Held-out identities (built-in: rendered like the fine-tuning data; real data: a share of its
    identities) and easy distractor identities for identification."""

    enabled: bool = True
    identities: int = 80
    images_per_identity: int = 6
    identity_offset: int = 100_000
    distractors: int = 500
    distractor_offset: int = 200_000
    real_test_fraction: float = 0.5  # real data: this share of the identities is held out for testing
    far_targets: tuple[float, ...] = (1e-2, 1e-3)
    seed: int = 1

    def __post_init__(self):
        check_range("identities", self.identities, 2, 10_000_000)
        check_range("images_per_identity", self.images_per_identity, 2, 100_000)
        check_range("distractors", self.distractors, 0, 100_000_000)
        check_range("real_test_fraction", self.real_test_fraction, 0, 1, low_open=True)
        for i, far in enumerate(self.far_targets):
            check_range(f"far_targets[{i}]", far, 0, 1, low_open=True)


@dataclass(frozen=True)
class DDLRecipe:
    name: str = "ddl"
    method: Literal["ddl"] = "ddl"
    pretrained: PretrainedSpec = field(default_factory=PretrainedSpec)
    data: DDLDataSpec = field(default_factory=DDLDataSpec)
    model: DDLModelSpec = field(default_factory=DDLModelSpec)
    loss: DDLLossConfig = field(default_factory=DDLLossConfig)
    train: DDLTrainSpec = field(default_factory=DDLTrainSpec)
    eval: DDLEvalSpec = field(default_factory=DDLEvalSpec)
    output_dir: str | None = None

    @property
    def out_dir(self) -> str:
        return self.output_dir or os.path.join("runs", self.name)


def load_ddl_recipe(path: str | os.PathLike) -> DDLRecipe:
    """Read a DDL recipe strictly (no command-line overrides: see :mod:`tfface.experiments.recipes`)."""
    return load_config(DDLRecipe, path)
