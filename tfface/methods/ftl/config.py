"""FTL's configs: :class:`FTLConfig` (networks, losses, statistics, the two-stage schedule: every paper
choice a field, every gap a named option) and :class:`FTLRecipe` (one ``tfface train`` experiment)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Literal

from tfface.config import check_range, load_config
from tfface.errors import ConfigError

__all__ = ["CONFIG_PRESETS", "TRANSFERS", "VARIANTS", "FTLConfig", "FTLRecipe", "Variant", "load_ftl_recipe"]

TRANSFERS = ("pca", "gauss", "none")


@dataclass(frozen=True)
class Variant:
    """One row of the spec's section 8.2 comparison, continued from the same pretrained checkpoint.

    ``schedule``: ``"joint"`` (Eq. 4 on every module, the baselines) or ``"alternating"`` (Algorithm 1);
    ``sampling`` of the joint schedule: ``"instance"`` or ``"class_balanced"``; ``transfer`` of Stage 1's
    third batch: ``"pca"`` (Eq. 7), ``"gauss"`` (``c_i + eps``, ``eps ~ N(0, V / n_reg)``) or ``"none"``;
    ``stage2``: alternate with Stage 2 (off: Stage 1 only); ``m_l2``: alpha_reg as configured (off: 0)."""

    schedule: Literal["joint", "alternating"]
    sampling: str = "instance"
    transfer: str = "pca"
    stage2: bool = True
    m_l2: bool = True


#: The spec's B0-B5 and FTL (section 8.2).
VARIANTS: dict[str, Variant] = {
    "sfmx": Variant("joint", m_l2=False),  # B0 (pretrained with alpha_reg = 0 too)
    "sfmx_ml2": Variant("joint"),  # B1
    "resample": Variant("joint", sampling="class_balanced"),  # B2
    "ftl_no_transfer": Variant("alternating", transfer="none"),  # B3
    "ftl_gauss": Variant("alternating", transfer="gauss"),  # B4
    "ftl_stage1_only": Variant("alternating", stage2=False),  # B5
    "ftl": Variant("alternating"),  # the method
}

#: The spec's small CPU networks (section 2), 32 x 32 grey input, g and f in R^64.
SMALL_ENCODER = ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (64, 2))
#: The CASIA-Net-style encoder of the spec's suggestion (DR-GAN's), 100 x 100 input, g in R^320.
CASIA_ENCODER = ((32, 1), (64, 1), (64, 2), (64, 1), (128, 1), (128, 2), (96, 1), (192, 1), (192, 2), (128, 1),
                 (256, 1), (256, 2), (160, 1), (320, 1))

#: Named starting points (:meth:`FTLConfig.preset`; ``model.preset`` in a recipe).
CONFIG_PRESETS: dict[str, dict] = {
    "small": {},
    "paper": {"input_shape": (100, 100, 1), "encoder_layers": CASIA_ENCODER, "feature_dim": 320,
              "filter_spatial": 7, "filter_channels": (64, 64, 32, 64, 128), "decoder_channels": (320, 256, 192, 128, 64)},
}


@dataclass(frozen=True)
class FTLConfig:
    """Defaults: the paper's values where it gives them (alpha_sfmx = alpha_recon = 1, alpha_reg = 0.25, 95 %
    PCA energy, Adam 2e-4 pretraining, 1e-5 in both stages), the spec's small networks and its suggestions
    elsewhere (sum reductions, tau, regular classes only in V)."""

    input_shape: tuple[int, int, int] = (32, 32, 1)
    encoder_layers: tuple[tuple[int, int], ...] = SMALL_ENCODER  # (filters, stride) of 3x3 conv + BN + ELU
    feature_dim: int = 64  # g and f (the paper: 320); Enc's last conv has this many filters
    filter_spatial: int = 4  # R: Dense -> (s, s, c0) -> 2 transposed convs (s2) -> 2 convs (s2) -> Dense
    filter_channels: tuple[int, int, int, int, int] = (32, 32, 32, 32, 64)
    decoder_channels: tuple[int, ...] = (64, 64, 32, 16)  # Dense -> (s, s, c0), then one s2 transposed conv each
    use_decoder: bool = True  # off: alpha_recon = 0 and no Dec (spec A17)
    alpha_sfmx: float = 1.0  # Eq. 4
    alpha_recon: float = 1.0
    alpha_reg: float = 0.25  # m-L2 (Eq. 3)
    recon_reduction: str = "sum"  # over pixels (spec A7); "mean" an option
    mreg_reduction: str = "mean"  # over classes (spec A8: "sum", the literal form, crushes the logits: docs)
    energy: float = 0.95  # PCA: the smallest K keeping this share of V's eigenvalue sum (Eq. 6)
    pca_components: int | None = None  # a fixed K instead of the energy rule (the paper's 150 of 320)
    pose_threshold: float = 42.0  # tau of Eq. 5 in degrees of |yaw| + |yaw of the flip| (the spec's 1.2 x 35)
    pretrain_learning_rate: float = 2e-4  # Adam (the paper)
    stage_learning_rate: float = 1e-5  # Adam in Stage 1, Stage 2 and the baselines' continuation (the paper)
    batch_size: int = 64  # N_s (not given; spec A4)
    seed: int = 0

    def __post_init__(self):
        for key in ("recon_reduction", "mreg_reduction"):
            if getattr(self, key) not in ("sum", "mean"):
                raise ConfigError(f"ftl.{key}: {getattr(self, key)!r} is not one of ('sum', 'mean')")
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ConfigError(f"ftl.input_shape: need (height, width, channels), got {self.input_shape}")
        if not self.encoder_layers or any(s not in (1, 2) or f < 1 for f, s in self.encoder_layers):
            raise ConfigError(f"ftl.encoder_layers: need (filters >= 1, stride 1 or 2) pairs, got {self.encoder_layers}")
        for key in ("feature_dim", "filter_spatial", "batch_size"):
            check_range(f"ftl.{key}", getattr(self, key), 1)
        for key in ("alpha_sfmx", "alpha_recon", "alpha_reg"):
            check_range(f"ftl.{key}", getattr(self, key), 0.0)
        check_range("ftl.energy", self.energy, 0.0, 1.0, low_open=True)
        if self.pca_components is not None and not 1 <= self.pca_components <= self.feature_dim:
            raise ConfigError(f"ftl.pca_components: K = {self.pca_components} must be between 1 and the feature "
                              f"size {self.feature_dim}")
        check_range("ftl.pose_threshold", self.pose_threshold, 0.0, low_open=True)
        check_range("ftl.pretrain_learning_rate", self.pretrain_learning_rate, 0.0, low_open=True)
        check_range("ftl.stage_learning_rate", self.stage_learning_rate, 0.0, low_open=True)

    @classmethod
    def preset(cls, name: str, **changes) -> FTLConfig:
        """``small`` (the spec's CPU networks, the defaults) or ``paper`` (100 x 100 input, CASIA-Net-style
        encoder, 320-D features), then ``changes``."""
        from tfface.config import preset_config

        return preset_config(cls, CONFIG_PRESETS, name, "model", **changes)

    def replace(self, **kw) -> FTLConfig:
        return dataclasses.replace(self, **kw)


@dataclass(frozen=True)
class FTLTrainSpec:
    pretrain_epochs: int = 30  # Eq. 4 on every module, no transfer (spec 8.2: about 30 epochs)
    cycles: int = 8  # alternations of Stage 1 and Stage 2 (spec 8.2: n_cycles = 8)
    iterations: int = 200  # N_iter per stage (the paper: 5K; spec 8.2: 200)

    def __post_init__(self):
        for key in ("pretrain_epochs", "cycles", "iterations"):
            check_range(f"train.{key}", getattr(self, key), 1)


@dataclass(frozen=True)
class FTLEvalSpec:
    pairs: int = 3000  # genuine and as many impostor pairs among unseen identities (10 folds)


@dataclass(frozen=True)
class FTLRecipe:
    name: str = "ftl"
    method: Literal["ftl"] = "ftl"
    variant: str = "ftl"
    data: dict = field(default_factory=dict)  # LongTailConfig fields (tfface.data.long_tail)
    model: dict = field(default_factory=dict)  # FTLConfig fields, with an optional preset
    train: FTLTrainSpec = field(default_factory=FTLTrainSpec)
    eval: FTLEvalSpec = field(default_factory=FTLEvalSpec)
    export: bool = True  # the encoder (and R) as an embedder SavedModel, checked in a fresh process
    output_dir: str | None = None

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ConfigError(f"variant: unknown {self.variant!r}; known: {', '.join(VARIANTS)}")
        self.model_config()
        data = self.data_config()
        if VARIANTS[self.variant].schedule == "alternating":
            if data.train_per_ur < 2:
                raise ConfigError(f"data.train_per_ur: {data.train_per_ur} image per UR class; a flip-averaged "
                                  "centre (Eq. 5) needs at least 2")
            if data.num_ur == 0:
                raise ConfigError(f"data.num_ur: 0 under-represented classes, so {self.variant} has nothing to "
                                  "transfer to; use a joint variant (sfmx, sfmx_ml2) for the R100-U0 bound")

    @property
    def out_dir(self) -> str:
        return self.output_dir or os.path.join("runs", self.name)

    def model_config(self, **changes) -> FTLConfig:
        from tfface.config import section_with_preset

        return section_with_preset(FTLConfig, CONFIG_PRESETS, self.model, "model", "small", **changes)

    def data_config(self):
        from tfface.config import from_dict
        from tfface.data.long_tail import LongTailConfig

        return from_dict(LongTailConfig, dict(self.data), where="data")


def load_ftl_recipe(path: str | os.PathLike) -> FTLRecipe:
    return load_config(FTLRecipe, path)
