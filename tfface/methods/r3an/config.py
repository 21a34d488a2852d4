"""R3AN's configs: :class:`R3ANConfig` (the model and its optimisation, every paper choice a field) and
:class:`R3ANRecipe` (one ``tfface train`` experiment: which old and new models make the triplets, the
translator, the budget, the evaluation and the export).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Literal

from tfface.config import load_config
from tfface.errors import ConfigError

__all__ = ["CONFIG_PRESETS", "VARIANTS", "R3ANConfig", "R3ANDataSpec", "R3ANEvalSpec", "R3ANRecipe", "R3ANTrainSpec",
           "load_r3an_recipe"]

#: Table 3: (use_adv, use_rec, use_rep, use_reg) per architecture.
VARIANTS: dict[str, tuple[bool, bool, bool, bool]] = {
    "arch1": (False, True, True, False),
    "arch2": (True, False, True, False),
    "arch3": (False, False, False, True),
    "arch4": (False, True, False, True),
    "arch5": (False, True, True, True),
    "arch6": (True, False, False, True),
    "arch7": (False, False, True, True),
    "r3an": (True, True, True, True),
    "fc": (False, False, False, True),
}


#: Named R3ANConfig starting points (:meth:`R3ANConfig.preset`); ``translator.preset`` in a recipe.
CONFIG_PRESETS: dict[str, dict] = {
    "paper": {},
    "cpu": {"optimizer": "adam", "learning_rate": 1e-3, "width": 0.5},
}


@dataclass(frozen=True)
class R3ANConfig:
    """Everything that defines an R3AN (or baseline) run; defaults follow the paper and spec section 7."""

    variant: str = "r3an"
    source_dim: int = 256
    target_dim: int = 256
    lambda_rec: float = 1.0
    lambda_adv: float = 0.01
    lambda_rep: float = 1.0
    lambda_reg: float = 1.0
    adv_loss: str = "non_saturating"  # or "saturating"
    feature_loss: str = "mse"  # or "sqdist"
    optimizer: str = "sgd"  # or "adam"
    d_optimizer: str = "same"  # or "adam": Adam(2e-4, 0.5) for D only
    learning_rate: float = 0.08
    momentum: float = 0.9
    weight_decay: float = 1e-3
    lr_boundaries: tuple[float, ...] = (0.3, 0.5, 0.7)  # 60k/100k/140k of 200k
    lr_decay: float = 0.1
    width: float = 1.0  # channel multiplier of G and E (1.0 = Table 1)
    expansion: int = 6
    fc_hidden: int | None = None  # None: matched to G+E's trainable parameters
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ConfigError(f"r3an.variant: unknown {self.variant!r}; known: {', '.join(VARIANTS)}")
        choices = {"adv_loss": ("non_saturating", "saturating"), "feature_loss": ("sqdist", "mse"),
                   "optimizer": ("sgd", "adam"), "d_optimizer": ("same", "adam")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"r3an.{key}: {getattr(self, key)!r} is not one of {allowed}")
        for key in ("lambda_rec", "lambda_adv", "lambda_rep", "lambda_reg", "weight_decay"):
            if not getattr(self, key) >= 0:
                raise ConfigError(f"r3an.{key} must be >= 0, got {getattr(self, key)}")
        if not self.learning_rate > 0 or not 0 < self.lr_decay <= 1 or not 0 <= self.momentum < 1:
            raise ConfigError("r3an: need learning_rate > 0, 0 < lr_decay <= 1 and 0 <= momentum < 1")
        b = tuple(self.lr_boundaries)
        if any(not 0 < x < 1 for x in b) or list(b) != sorted(b):
            raise ConfigError(f"r3an.lr_boundaries must be increasing fractions in (0, 1), got {b}")
        for key in ("source_dim", "target_dim"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"r3an.{key} must be >= 1")

    @classmethod
    def preset(cls, name: str, **changes) -> R3ANConfig:
        """A named starting point: ``paper`` (the defaults: SGD 0.08, 200k-iteration schedule shape,
        width 1) or ``cpu`` (the budget that trains in minutes on 2 cores: Adam 1e-3 with beta1 0.5,
        width 0.5), with ``changes`` on top."""
        from tfface.config import preset_config

        return preset_config(cls, CONFIG_PRESETS, name, "translator", **changes)

    @property
    def flags(self) -> tuple[bool, bool, bool, bool]:
        return VARIANTS[self.variant]

    def replace(self, **kw) -> R3ANConfig:
        return dataclasses.replace(self, **kw)


@dataclass(frozen=True)
class RealPairsSpec:
    """The user's own faces (``path``: identity folders; landmarks by dlib, the ``real`` extra) mixed with the
    renders: each real training pair counts ``weight`` times, and ``test_fraction`` of the identities
    (seeded) are held out to measure the translator on real faces (probe-transform rank-1, the first
    image of each identity as the gallery)."""

    path: str
    weight: int = 1
    test_fraction: float = 0.5
    seed: int = 0

    def __post_init__(self):
        if not self.path:
            raise ConfigError("data.real.path: a folder of identity folders is required")
        if not 1 <= int(self.weight) <= 1000:
            raise ConfigError(f"data.real.weight: must be in [1, 1000], got {self.weight}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError(f"data.real.test_fraction: must be in [0, 1), got {self.test_fraction}")


@dataclass(frozen=True)
class R3ANDataSpec:
    """Where the (56x56 face, old feature, new feature) triplets come from.

    ``builtin``: the built-in faces of the ``old`` recognizer recipe's world (training, held-out test
    and distractor identities, as the demo renders them), embedded by the old and the new model. Each
    of ``old`` and ``new`` is a saved embedder (``.keras``) or a recognizer recipe (``.yaml``), which is
    trained first into ``runs/<its name>`` when its ``embedder.keras`` is missing there.
    ``npz``: a paired-features file at ``path`` (arrays faces, source, target, labels; written by
    :func:`tfface.methods.r3an.data.save_pairs`); evaluation is then off.
    """

    source: Literal["builtin", "rendered", "npz"] = "builtin"
    old: str = "recognizer_small.yaml"
    new: str = "recognizer_large.yaml"
    path: str | None = None
    # source: rendered (tfface.translation.triplets): new identities rendered for these two models
    old_preprocessing: str | None = None  # for .onnx / .tflite / SavedModel models (a registered name)
    new_preprocessing: str | None = None
    old_alignment: str = "render"  # render, arcface112, arcface112x96, dlib150
    new_alignment: str = "render"
    triplets: dict = field(default_factory=dict)  # TripletSpec fields
    real: RealPairsSpec | None = None  # source: rendered: the user's own faces mixed with the renders

    def __post_init__(self):
        if self.source == "npz" and not self.path:
            raise ConfigError("path: required when source is 'npz' (a paired-features .npz)")
        if self.source == "rendered":
            self.triplet_spec()
        if self.real is not None and self.source != "rendered":
            raise ConfigError("data.real: the user's real faces mix with rendered triplets (source: rendered)")
        if self.real is not None:
            for role in ("old", "new"):
                if getattr(self, f"{role}_alignment") == "render":
                    raise ConfigError(f"data.{role}_alignment: 'render' cannot align the real photographs of "
                                      "data.real; name the model's template (arcface112, arcface112x96, dlib150)")

    def triplet_spec(self):
        """The :class:`~tfface.data.triplet_spec.TripletSpec` of ``triplets`` (checked field by field)."""
        from tfface.config import from_dict
        from tfface.data.triplet_spec import ALIGNMENTS, TripletSpec

        for role in ("old", "new"):
            if getattr(self, f"{role}_alignment") not in ALIGNMENTS:
                raise ConfigError(f"data.{role}_alignment: unknown {getattr(self, f'{role}_alignment')!r}; "
                                  f"known: {', '.join(ALIGNMENTS)}")
        return from_dict(TripletSpec, dict(self.triplets), where="data.triplets")


@dataclass(frozen=True)
class R3ANTrainSpec:
    epochs: int = 6
    batch_size: int = 64
    ridge: float | str = "cv"  # the linear baseline's ridge (variant: linear): a value, or "cv" (select_ridge)
    bn_recalibration: bool = True

    def __post_init__(self):
        if not 1 <= self.epochs <= 100_000:
            raise ConfigError(f"epochs: must be in [1, 100000], got {self.epochs}")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size: must be >= 2, got {self.batch_size}")
        if self.ridge != "cv" and (isinstance(self.ridge, str) or not self.ridge >= 0):
            raise ConfigError(f"ridge: must be a number >= 0 or 'cv', got {self.ridge!r}")


@dataclass(frozen=True)
class R3ANEvalSpec:
    enabled: bool = True  # MegaFace per-pair top-1 on held-out identities with distractors (not for npz)
    # source: rendered: held-out identities rendered like the triplets (other identity indices)
    identities: int = 200
    images_per_identity: int = 5
    distractors: int = 2000
    select_fraction: float = 0.1  # with several variants: training identities held out to pick the winner

    def __post_init__(self):
        for key in ("identities", "distractors"):
            if getattr(self, key) < 1:
                raise ConfigError(f"eval.{key}: must be >= 1, got {getattr(self, key)}")
        if self.images_per_identity < 2:
            raise ConfigError(f"eval.images_per_identity: the per-pair protocol needs >= 2, got {self.images_per_identity}")
        if not 0 < self.select_fraction < 1:
            raise ConfigError(f"eval.select_fraction: must be in (0, 1), got {self.select_fraction}")


@dataclass(frozen=True)
class R3ANRecipe:
    """``variant`` in :data:`VARIANTS`, or ``linear`` (the closed-form ridge baseline). ``source_dim``
    and ``target_dim`` of the translator follow the triplets (leave them out of the recipe)."""

    name: str = "r3an"
    method: Literal["r3an"] = "r3an"
    variant: str | list[str] = "r3an"  # one, or several: each trained, the best on held-out identities kept
    data: R3ANDataSpec = field(default_factory=R3ANDataSpec)
    translator: dict = field(default_factory=dict)  # R3ANConfig fields (not variant, dims)
    train: R3ANTrainSpec = field(default_factory=R3ANTrainSpec)
    eval: R3ANEvalSpec = field(default_factory=R3ANEvalSpec)
    export: bool = True  # a SavedModel for TF Serving under <out>/export/translator
    onnx: bool = False  # and translator.onnx beside it (checked against onnxruntime)
    output_dir: str | None = None

    def __post_init__(self):
        for v in self.variants:
            if v != "linear" and v not in VARIANTS:
                raise ConfigError(f"variant: unknown {v!r}; known: linear, {', '.join(VARIANTS)}")
        if not self.variants or len(set(self.variants)) != len(self.variants):
            raise ConfigError(f"variant: need one or more distinct variants, got {self.variant!r}")
        bad = set(self.translator) & {"variant", "source_dim", "target_dim"}
        if bad:
            raise ConfigError(f"translator.{sorted(bad)[0]}: set by the recipe (variant) or the triplets (dims)")
        known = {f.name for f in dataclasses.fields(R3ANConfig)} | {"preset"}
        unknown = set(self.translator) - known
        if unknown:
            raise ConfigError(f"translator.{sorted(unknown)[0]}: unknown R3AN field; known: {', '.join(sorted(known))}")
        self.translator_config(1, 1)  # validate the values now, before any work

    @property
    def variants(self) -> list[str]:
        return [self.variant] if isinstance(self.variant, str) else list(self.variant)

    @property
    def out_dir(self) -> str:
        return self.output_dir or os.path.join("runs", self.name)

    def translator_config(self, source_dim: int, target_dim: int, variant: str | None = None) -> R3ANConfig:
        """The R3ANConfig of ``variant`` (default: the recipe's first); ``linear`` gets R3AN's fields."""
        from tfface.config import section_with_preset

        variant = variant or self.variants[0]
        base = section_with_preset(R3ANConfig, CONFIG_PRESETS, self.translator, "translator", "paper")
        return base.replace(variant="r3an" if variant == "linear" else variant,
                            source_dim=source_dim, target_dim=target_dim)


def load_r3an_recipe(path: str | os.PathLike) -> R3ANRecipe:
    return load_config(R3ANRecipe, path)
