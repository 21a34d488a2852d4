"""WSGAN's configs: :class:`WSGANConfig` (networks, losses, schedule: every paper choice a field, every
gap a named option) and :class:`WSGANRecipe` (one ``tfface train`` experiment)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Literal

from tfface.config import load_config
from tfface.errors import ConfigError

__all__ = ["CONFIG_PRESETS", "VARIANTS", "WSGANConfig", "WSGANRecipe", "load_wsgan_recipe"]

#: The spec's models that train G (section 8.1 / Table 3): (use_adv, use_cls, use_e, use_z).
VARIANTS: dict[str, tuple[bool, bool, bool, bool]] = {
    "wsgan": (True, True, True, True),  # M4: L_A + L_C + L_E
    "wsgan_no_e": (True, True, False, True),  # M3 (WSGAN-dagger): L_A + L_C
    "lc_only": (False, True, False, True),  # Table 3's first row: L_C only, z still fed (spec A12)
    "deterministic": (True, True, False, False),  # M1: G without z (a deterministic WGAN mapper)
}


#: Named starting points (:meth:`WSGANConfig.preset`; ``model.preset`` in a recipe).
CONFIG_PRESETS: dict[str, dict] = {
    "paper": {},
    "cpu": {"gd_learning_rate": 5e-4, "f_learning_rate": 0.05, "e_learning_rate": 0.5},
    "gp": {"critic_constraint": "gp", "gd_optimizer": "adam", "gd_learning_rate": 1e-4, "f_learning_rate": 0.05,
           "e_learning_rate": 0.5, "strong_extractor_adversarial": False},
}


@dataclass(frozen=True)
class WSGANConfig:
    """Defaults: the paper's values where it gives them (lambda = nu = 0.1, mu = 0.01, n_critic 5, clip 0.01,
    SGD 0.005 for F / W_C / E, RMSProp for G / D), the spec's suggestions elsewhere (RMSProp 5e-5, WGAN's
    rate, since the paper's "0.005 in all settings" is ambiguous for RMSProp: spec A5)."""

    variant: str = "wsgan"
    weak_dim: int = 64  # input sizes (features here; images use input_shape)
    strong_dim: int = 64
    input_shape: tuple[int, ...] | None = None  # an image shape (H, W, C) for the pixel-level pipeline
    feature_dim: int = 64
    extractor_hidden: int = 128
    shared_extractor: bool = True  # paper's technical details (spec A3)
    d_phase_grad_through_weak: bool = False  # literal reading of "F_S and D ... from both modalities" (A3)
    z_dim: int = 16
    width: int = 128  # hidden width of G, D and E
    residual: bool = False  # G outputs f + MLP([f, z])
    lambda_cls: float = 0.1  # lambda: L_C^g in J_G (Eq. 8)
    nu_cls: float = 0.1  # nu: L_C^d in J_D (Eq. 9)
    mu_e: float = 0.01  # mu: L_E in both (Eq. 7)
    n_critic: int = 5  # "D-phase is invoked 5 times more frequently than G-phase"
    critic_constraint: str = "clip"  # "clip" (the paper, WGAN) or "gp" (WGAN-GP, an option beyond it)
    clip: float = 0.01
    gp_weight: float = 10.0
    f_learning_rate: float = 0.005  # SGD for F, W_C and E (the paper)
    f_momentum: float = 0.9  # not given (spec A5)
    e_learning_rate: float | None = None  # E's SGD rate (None: f_learning_rate; with mu = 0.01 E barely moves)
    strong_extractor_adversarial: bool = True  # F_S also descends L_A^d's real term (J_D's argument list);
    # off: F_S learns from nu L_C^d only (needed with "gp": an unclipped critic lets F_S inflate D(real))
    gd_optimizer: str = "rmsprop"  # for G and D, "as suggested in WGAN"; or "adam" (beta1 0.5, 0.9) with gp
    gd_learning_rate: float = 5e-5
    seed: int = 0

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ConfigError(f"wsgan.variant: unknown {self.variant!r}; known: {', '.join(VARIANTS)}")
        if self.critic_constraint not in ("clip", "gp"):
            raise ConfigError(f"wsgan.critic_constraint: {self.critic_constraint!r} is not one of ('clip', 'gp')")
        if self.gd_optimizer not in ("rmsprop", "adam"):
            raise ConfigError(f"wsgan.gd_optimizer: {self.gd_optimizer!r} is not one of ('rmsprop', 'adam')")
        for key in ("weak_dim", "strong_dim", "feature_dim", "extractor_hidden", "z_dim", "width", "n_critic"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"wsgan.{key}: must be >= 1, got {getattr(self, key)}")
        for key in ("lambda_cls", "nu_cls", "mu_e", "gp_weight"):
            if not getattr(self, key) >= 0:
                raise ConfigError(f"wsgan.{key}: must be >= 0, got {getattr(self, key)}")
        if not self.clip > 0 or not self.f_learning_rate > 0 or not self.gd_learning_rate > 0:
            raise ConfigError("wsgan: clip, f_learning_rate and gd_learning_rate must be > 0")
        if self.e_learning_rate is not None and not self.e_learning_rate > 0:
            raise ConfigError(f"wsgan.e_learning_rate: must be > 0 or null, got {self.e_learning_rate}")
        if self.shared_extractor and self.input_shape is None and self.weak_dim != self.strong_dim:
            raise ConfigError(f"wsgan.shared_extractor: one extractor cannot take weak features of {self.weak_dim} "
                              f"and strong features of {self.strong_dim} dimensions; set shared_extractor: false")

    @classmethod
    def preset(cls, name: str, **changes) -> WSGANConfig:
        """``paper`` (the defaults) or ``cpu`` (what trains in a few thousand iterations on 2 cores:
        RMSProp 5e-4 for G and D, SGD 0.05 for F and W_C, E at 0.5 so that mu L_E moves it), then ``changes``."""
        from tfface.config import preset_config

        return preset_config(cls, CONFIG_PRESETS, name, "model", **changes)

    @property
    def flags(self) -> tuple[bool, bool, bool, bool]:
        return VARIANTS[self.variant]

    def replace(self, **kw) -> WSGANConfig:
        return dataclasses.replace(self, **kw)


@dataclass(frozen=True)
class WSGANWorldSpec:
    """``source: features``: the spec's feature-level world (:class:`~tfface.data.weak_strong.WeakStrongConfig`
    fields in ``world``)."""

    source: Literal["features"] = "features"
    world: dict = field(default_factory=dict)


@dataclass(frozen=True)
class WSGANTrainSpec:
    pretrain_epochs: int = 8  # M0: F + W_C by softmax on the strong modality (spec A4)
    iterations: int = 3000  # G-iterations of the alternating schedule (each with n_critic D-phases)
    strong_batch_size: int = 256
    weak_batch_size: int = 256  # weak samples drawn with replacement (spec A6)
    m2_epochs: int = 30  # the regression-to-class-mean baseline

    def __post_init__(self):
        for key in ("pretrain_epochs", "iterations", "strong_batch_size", "weak_batch_size", "m2_epochs"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"train.{key}: must be >= 1, got {getattr(self, key)}")


@dataclass(frozen=True)
class WSGANEvalSpec:
    m: int = 10  # samples per query (the paper)
    draws: int = 5  # test-time z draws averaged ("5 times testing")
    sigmas: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)  # chosen on validation (spec A8)

    def __post_init__(self):
        if self.m < 1:
            raise ConfigError(f"eval.m: must be >= 1, got {self.m}")
        if self.draws < 1:
            raise ConfigError(f"eval.draws: must be >= 1, got {self.draws}")
        if not self.sigmas or min(self.sigmas) <= 0:
            raise ConfigError(f"eval.sigmas: need values > 0, got {self.sigmas}")


@dataclass(frozen=True)
class WSGANRecipe:
    name: str = "wsgan"
    method: Literal["wsgan"] = "wsgan"
    data: WSGANWorldSpec = field(default_factory=WSGANWorldSpec)
    model: dict = field(default_factory=dict)  # WSGANConfig fields (dims follow the data)
    train: WSGANTrainSpec = field(default_factory=WSGANTrainSpec)
    eval: WSGANEvalSpec = field(default_factory=WSGANEvalSpec)
    export: bool = True  # the generator as a SavedModel: (weak feature, z) -> strong-space feature
    output_dir: str | None = None

    def __post_init__(self):
        self.model_config(1, 1)
        self.world_config()

    @property
    def out_dir(self) -> str:
        return self.output_dir or os.path.join("runs", self.name)

    def model_config(self, weak_dim: int, strong_dim: int, **changes) -> WSGANConfig:
        from tfface.config import section_with_preset

        bad = set(self.model) & {"weak_dim", "strong_dim"}
        if bad:
            raise ConfigError(f"model.{sorted(bad)[0]}: set by the data")
        return section_with_preset(WSGANConfig, CONFIG_PRESETS, self.model, "model", "paper",
                                   weak_dim=weak_dim, strong_dim=strong_dim, **changes)

    def world_config(self):
        from tfface.config import from_dict
        from tfface.data.weak_strong import WeakStrongConfig

        return from_dict(WeakStrongConfig, dict(self.data.world), where="data.world")


def load_wsgan_recipe(path: str | os.PathLike) -> WSGANRecipe:
    return load_config(WSGANRecipe, path)
