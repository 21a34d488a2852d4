"""What rendered (face, old feature, new feature) triplets are made of: the named render distributions,
how each model's faces are aligned, and :class:`TripletSpec` (which identities, how many images, what
size). :mod:`tfface.translation.triplets` builds the triplets from it; recipes check it before any work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from tfface.data.alignment import TEMPLATES, align_face
from tfface.data.synthetic import SUPPORTED_SIZES, FaceDataConfig, NuisanceConfig
from tfface.errors import ConfigError

__all__ = ["ALIGNMENTS", "DISTRIBUTIONS", "TripletSpec", "aligned_for"]

#: Named render distributions (nuisance ranges of :class:`~tfface.data.synthetic.NuisanceConfig`).
#: ``builtin``: what the presets were trained on; ``frontal``: near-frontal, mild expression, plain
#: background (a passport-like gallery); ``wide``: yaw up to 60 degrees, stronger expression.
DISTRIBUTIONS: dict[str, NuisanceConfig] = {
    "builtin": NuisanceConfig(),
    "frontal": NuisanceConfig(yaw=(-15.0, 15.0), pitch=(-8.0, 8.0), roll=(-4.0, 4.0), expression_strength=0.35,
                              background="plain"),
    "wide": NuisanceConfig(yaw=(-60.0, 60.0), pitch=(-20.0, 20.0), expression_strength=0.9),
}

#: How a face reaches a model: the renderer's framing, or a warp onto a named landmark template.
ALIGNMENTS = ("render", *sorted(TEMPLATES))


@dataclass(frozen=True)
class TripletSpec:
    """Which rendered faces make the triplets. ``identity_offset`` keeps them apart from the identities
    the built-in presets were trained on (0..1999) and evaluated on (100000 and up)."""

    num_identities: int = 1000
    images_per_identity: int = 10
    distribution: str = "builtin"
    render_size: int = 112
    seed: int = 0
    identity_offset: int = 2_000_000
    chunk_identities: int = 100

    def __post_init__(self):
        if self.distribution not in DISTRIBUTIONS:
            raise ConfigError(f"triplets.distribution: unknown {self.distribution!r}; known: {', '.join(DISTRIBUTIONS)}")
        if self.render_size not in SUPPORTED_SIZES:
            raise ConfigError(f"triplets.render_size: {self.render_size} is not one of {SUPPORTED_SIZES}")
        for key in ("num_identities", "images_per_identity", "chunk_identities"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"triplets.{key}: must be >= 1, got {getattr(self, key)}")

    def replace(self, **kw) -> TripletSpec:
        return dataclasses.replace(self, **kw)

    def render_config(self, first: int, count: int) -> FaceDataConfig:
        return FaceDataConfig(num_identities=count, images_per_identity=self.images_per_identity,
                              image_size=self.render_size, seed=self.seed, identity_offset=self.identity_offset + first,
                              nuisance=DISTRIBUTIONS[self.distribution])


def aligned_for(images: np.ndarray, landmarks5: np.ndarray, alignment: str) -> np.ndarray:
    """``images`` (N, S, S, 3) uint8 as a model with ``alignment`` takes them (see :data:`ALIGNMENTS`)."""
    if alignment == "render":
        return images
    if alignment not in TEMPLATES:
        raise ConfigError(f"alignment: unknown {alignment!r}; known: {', '.join(ALIGNMENTS)}")
    return np.stack([align_face(im, lm, alignment) for im, lm in zip(images, landmarks5, strict=True)])
