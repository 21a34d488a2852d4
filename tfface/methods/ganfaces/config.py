"""GANFaces' configs: :class:`GANFacesConfig` (networks, losses, BEGAN balancing, schedule: every paper
choice a field, every gap a named option) and :class:`GANFacesRecipe` (one ``tfface train`` experiment).

Paper: Gecer, Bhattarai, Kittler, Kim, "Semi-supervised Adversarial Learning to Generate Photorealistic
Face Images of New Identities from 3D Morphable Model", ECCV 2018.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Literal

from tfface.config import check_range, load_config
from tfface.errors import ConfigError

__all__ = ["CONFIG_PRESETS", "VARIANTS", "GANFacesConfig", "GANFacesRecipe", "Variant", "load_ganfaces_recipe"]


@dataclass(frozen=True)
class Variant:
    """Which of the paper's modules a run keeps (supplementary Table 1 removes one at a time; the
    discriminators D_R and D_S are never ablated)."""

    pair_matching: bool = True  # L_DP (Eq. 6) in G''s objective (Eq. 9)
    cycle: bool = True  # L_cyc (Eq. 1) in Eqs. 8 and 9 (and as L_DP's fake term)
    identity: bool = True  # L_C (Eq. 7) in G's objective (Eq. 8)


#: The full method and the supplementary material's three ablations.
VARIANTS: dict[str, Variant] = {
    "ganfaces": Variant(),
    "no_dp": Variant(pair_matching=False),
    "no_cyc": Variant(cycle=False),
    "no_c": Variant(identity=False),
}

#: The paper's learning-rate halvings (after 128K, 192K, 224K, 240K, 244K, 246K, 247K of 248K iterations) as
#: fractions of the run, so a short run keeps the schedule's shape (spec A23).
PAPER_HALVINGS = tuple(round(k / 248, 4) for k in (128, 192, 224, 240, 244, 246, 247))

#: Named starting points (:meth:`GANFacesConfig.preset`; ``model.preset`` in a recipe).
CONFIG_PRESETS: dict[str, dict] = {
    "small": {},  # the spec's CPU scale (section 7.4): 32 x 32, ngf 16, D n = 16, z = 32
    "paper": {"image_size": 108, "ngf": 32, "d_hidden": 64, "d_bottleneck": 64},
}


@dataclass(frozen=True)
class GANFacesConfig:
    """Defaults: the paper's values where it gives them (lambda_cyc = lambda_DP = 0.5, lambda_C = 0.001,
    lambda_id = 0.1, gamma = 0.5, lambda_k = 0.001, eta = 1, beta = 0.95, Adam 8e-5, 3 residual blocks,
    dropout keep 0.9), the authors' code where the paper is silent (no norm outside the residual blocks,
    EMA 0.9999 with warm-up, lr floor 5e-6) and the spec's CPU scale for the sizes (32 x 32, ngf 16)."""

    variant: str = "ganfaces"
    image_size: int = 32  # H = W of G's input and output (the paper: 108)
    ngf: int = 16  # G / G' base width (c7s1-ngf, d 2ngf, d 4ngf, R 4ngf x res_blocks, u 2ngf, u ngf)
    res_blocks: int = 3  # "only 3 residual blocks"
    dropout: float = 0.1  # after each residual block of G (keep rate 0.9)
    dropout_at_generation: bool = True  # dropout stays on when generating (TF1 tf.nn.dropout; spec A11)
    norm_everywhere: bool = False  # InstanceNorm after every conv of G / G', not only in the blocks (A10)
    d_hidden: int = 16  # BEGAN D: n
    d_bottleneck: int = 32  # BEGAN D: z
    d_repeat: int | None = None  # BEGAN D: conv stages (None: floor(log2(image_size)) - 2)
    lambda_cyc: float = 0.5  # Eqs. 8, 9
    lambda_dp: float = 0.5  # Eq. 9
    lambda_c: float = 0.001  # Eq. 8
    lambda_id: float = 0.1  # L_id = |x - G(x)| on the rendered face pixels (spec A5)
    gamma: float = 0.5  # BEGAN diversity ratio in the k_t updates
    lambda_k: float = 0.001  # k_t step
    eta: float = 1.0  # L_C's margin (Eq. 7)
    beta: float = 0.95  # centroid momentum: c <- beta c + (1 - beta) f (spec A3)
    sigma_is_variance: bool = False  # False: sigma = sum |f - c|^2 / (M - 1), exponent / 2 sigma^2 (A2)
    c_input_size: int | None = None  # C's crop (None: round(image_size * 96 / 108), the paper's 96 of 108)
    c_flip: bool = True  # random horizontal flip before C (A13: crop + flip, no rotation)
    c_standardize: bool = True  # per-image standardisation before C (the authors' code); off: [-1, 1] as is
    learning_rate: float = 8e-5  # Adam for G, G', D_R and D_S
    lr_halvings: tuple[float, ...] = PAPER_HALVINGS  # fractions of the run (A23)
    lr_floor: float = 5e-6  # the authors' floor: only the first 4 halvings bite at 8e-5 (A9)
    adam_beta_1: float = 0.9  # TF defaults (the authors' code never passes its beta1 = 0.5; A8)
    adam_beta_2: float = 0.999
    adam_epsilon: float = 1e-8
    ema_decay: float = 0.9999  # moving average of G's weights, used to generate (A16)
    ema_warmup: bool = True  # decay = min(ema_decay, (1 + t) / (10 + t)) (TF's num_updates)
    seed: int = 0

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ConfigError(f"ganfaces.variant: unknown {self.variant!r}; known: {', '.join(VARIANTS)}")
        check_range("ganfaces.image_size", self.image_size, 8, 1024)
        if self.image_size % 4:
            raise ConfigError(f"ganfaces.image_size: {self.image_size} must be a multiple of 4 (G downsamples twice)")
        for key in ("ngf", "res_blocks", "d_hidden", "d_bottleneck"):
            check_range(f"ganfaces.{key}", getattr(self, key), 1, 4096)
        if self.d_repeat is not None:
            check_range("ganfaces.d_repeat", self.d_repeat, 1, int(math.log2(self.image_size)))
        check_range("ganfaces.dropout", self.dropout, 0.0, 1.0)
        if self.dropout >= 1.0:
            raise ConfigError(f"ganfaces.dropout: must be < 1 (a rate), got {self.dropout}")
        for key in ("lambda_cyc", "lambda_dp", "lambda_c", "lambda_id", "gamma", "lambda_k", "eta"):
            check_range(f"ganfaces.{key}", getattr(self, key), 0.0)
        check_range("ganfaces.beta", self.beta, 0.0, 1.0)
        if self.c_input_size is not None:
            check_range("ganfaces.c_input_size", self.c_input_size, 1, self.image_size)
        check_range("ganfaces.learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)
        check_range("ganfaces.lr_floor", self.lr_floor, 0.0, self.learning_rate)
        if any(not 0.0 < f < 1.0 for f in self.lr_halvings) or list(self.lr_halvings) != sorted(self.lr_halvings):
            raise ConfigError(f"ganfaces.lr_halvings: need increasing fractions of the run in (0, 1), "
                              f"got {self.lr_halvings}")
        check_range("ganfaces.ema_decay", self.ema_decay, 0.0, 1.0)

    @classmethod
    def preset(cls, name: str, **changes) -> GANFacesConfig:
        """``small`` (the defaults: 32 x 32, the spec's CPU widths) or ``paper`` (108 x 108, ngf 32,
        D n = z = 64), then ``changes``."""
        from tfface.config import preset_config

        return preset_config(cls, CONFIG_PRESETS, name, "model", **changes)

    @property
    def flags(self) -> Variant:
        return VARIANTS[self.variant]

    @property
    def crop_size(self) -> int:
        """The side of C's input crop."""
        return int(self.c_input_size or round(self.image_size * 96 / 108))

    @property
    def discriminator_repeat(self) -> int:
        return int(self.d_repeat or max(1, int(math.log2(self.image_size)) - 2))

    def replace(self, **kw) -> GANFacesConfig:
        return dataclasses.replace(self, **kw)


@dataclass(frozen=True)
class GANFacesDataSpec:
    """The four sets of the spec's toy world (section 7.3), rendered by the built-in 3DMM renderer.

    Synthetic S: ``style="plain"`` renders of new identities; real R (unpaired, for D_R): full renders of
    other identities; pairs P: one image each of ``pairs`` further identities, rendered both ways with the
    same identity and nuisance draws; R_C: full renders of yet other identities, to pretrain C. Renders are
    made at ``render_size`` (a renderer size) and area-averaged to the model's ``image_size``."""

    render_size: int = 64
    synthetic_identities: int = 200
    synthetic_per_identity: int = 10
    real_identities: int = 100
    real_per_identity: int = 10
    pairs: int = 200  # spec A21: a parameter, reported
    embedder_identities: int = 100
    embedder_per_identity: int = 10
    seed: int = 0

    def __post_init__(self):
        from tfface.data.synthetic import SUPPORTED_SIZES

        if self.render_size not in SUPPORTED_SIZES:
            raise ConfigError(f"data.render_size: {self.render_size} is not one of {SUPPORTED_SIZES}")
        for key in ("synthetic_identities", "synthetic_per_identity", "real_per_identity", "embedder_per_identity"):
            check_range(f"data.{key}", getattr(self, key), 1, 1_000_000)
        for key in ("real_identities", "pairs", "embedder_identities"):  # 0 is an error where the run needs it
            check_range(f"data.{key}", getattr(self, key), 0, 1_000_000)


@dataclass(frozen=True)
class GANFacesEmbedderSpec:
    """The frozen identity embedder C: a ``.keras`` file (``path``), or the spec's small CNN pretrained by
    softmax on the R_C renders (``epochs`` of Adam 1e-3) when ``path`` is null."""

    path: str | None = None
    embedding_dim: int = 64
    epochs: int = 10
    batch_size: int = 64

    def __post_init__(self):
        check_range("embedder.embedding_dim", self.embedding_dim, 1, 4096)
        check_range("embedder.epochs", self.epochs, 0, 100_000)
        check_range("embedder.batch_size", self.batch_size, 1, 65_536)


@dataclass(frozen=True)
class GANFacesTrainSpec:
    iterations: int = 1500  # the paper: 248K; the spec's smoke tier: ~1.5K
    batch_size: int = 16  # the paper's (GLOBAL: each of x, y and the pairs)
    image_every: int = 250  # TensorBoard image grids (render | refined | paired real) every N steps

    def __post_init__(self):
        check_range("train.iterations", self.iterations, 1, 100_000_000)
        check_range("train.batch_size", self.batch_size, 2, 65_536)
        check_range("train.image_every", self.image_every, 1, 100_000_000)


@dataclass(frozen=True)
class GANFacesGenerateSpec:
    """The generated set ("GANFaces-mini"): ``identities`` x ``images_per_identity`` refined renders."""

    identities: int = 100
    images_per_identity: int = 10

    def __post_init__(self):
        check_range("generate.identities", self.identities, 1, 10_000_000)
        check_range("generate.images_per_identity", self.images_per_identity, 1, 100_000)


@dataclass(frozen=True)
class GANFacesRecipe:
    name: str = "ganfaces"
    method: Literal["ganfaces"] = "ganfaces"
    data: GANFacesDataSpec = field(default_factory=GANFacesDataSpec)
    model: dict = field(default_factory=dict)  # GANFacesConfig fields, with an optional preset
    embedder: GANFacesEmbedderSpec = field(default_factory=GANFacesEmbedderSpec)
    train: GANFacesTrainSpec = field(default_factory=GANFacesTrainSpec)
    generate: GANFacesGenerateSpec = field(default_factory=GANFacesGenerateSpec)
    export: bool = True  # G (EMA weights) as a SavedModel: synthetic_images -> refined_images
    output_dir: str | None = None

    def __post_init__(self):
        cfg = self.model_config()
        d = self.data
        if d.real_identities == 0:
            raise ConfigError("data.real_identities: 0, so the real domain (D_R's real samples) is empty")
        if cfg.flags.pair_matching and d.pairs == 0:
            raise ConfigError(f"data.pairs: 0 pairs, but variant {cfg.variant!r} trains L_DP on them")
        if cfg.flags.identity and self.embedder.path is None and d.embedder_identities < 2:
            raise ConfigError("data.embedder_identities: C's softmax pretraining needs at least 2 identities")
        if d.render_size < cfg.image_size or d.render_size % cfg.image_size:
            raise ConfigError(f"data.render_size: {d.render_size} px renders cannot be area-averaged to the model's "
                              f"image_size {cfg.image_size} (need a multiple)")
        if self.generate.identities > d.synthetic_identities or \
                self.generate.images_per_identity > d.synthetic_per_identity:
            raise ConfigError(f"generate: {self.generate.identities} x {self.generate.images_per_identity} images "
                              f"asked, the synthetic domain has {d.synthetic_identities} x {d.synthetic_per_identity}")

    @property
    def out_dir(self) -> str:
        return self.output_dir or os.path.join("runs", self.name)

    def model_config(self, **changes) -> GANFacesConfig:
        from tfface.config import section_with_preset

        return section_with_preset(GANFacesConfig, CONFIG_PRESETS, self.model, "model", "small", **changes)


def load_ganfaces_recipe(path: str | os.PathLike) -> GANFacesRecipe:
    return load_config(GANFacesRecipe, path)
