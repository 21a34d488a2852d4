"""WSGAN's feature-level world (spec section 8.1): a weak modality that loses a controlled amount of identity.

Each identity ``c`` has a latent code ``u_c ~ N(0, I_k)``. Strong "images" are
``s = normalize(A u_c + strong_noise * eps)`` (many per identity); a weak "image" (a sketch) is
``w = B h(u_c) + weak_noise * eps``, where ``h`` is the condition:

``A`` and ``B`` are fixed random matrices with entries ``N(0, 1/k)``, so each coordinate of ``A u`` has
unit variance (the spec leaves their scale open; with unit entries the strong noise would vanish).

- ``C0`` balanced: ``h(u) = u`` (the weak sample is as informative as a strong one);
- ``C1`` unimodal loss: the last ``lost`` coordinates zeroed (``p(s | w)`` a broad Gaussian);
- ``C2`` multimodal loss: the last ``lost`` coordinates replaced by their absolute values (the sign is
  lost, ``p(s | w)`` has ``2^lost`` modes: the case a deterministic map cannot represent).

Splits as the spec (mirroring the paper's): training identities with strong images, a subset of them
also with one weak sample (that identity's "source" strong image dropped: the weak sample was made
from it); validation identities (weak query + strong gallery) for the kernel width and model choice;
test identities (one weak query, ``gallery_per_identity`` strong images) and single-image distractor
identities in the gallery.

:func:`oracle_samples` draws from the true ``p(s | w)`` (model M5 of the spec): the exact Gaussian
posterior of ``h(u)`` given ``w`` (C0, C1; for C2 the posterior of ``|u|`` treated as Gaussian, with
random signs for the lost coordinates), pushed through the strong generator.

Example:
  >>> from tfface.data.weak_strong import WeakStrongConfig, make_world
  >>> w = make_world(WeakStrongConfig(condition="C2", lost=4, train_identities=50, weak_train_identities=20,
  ...                                 val_identities=10, test_identities=10, distractors=20))
  >>> w["train_strong"].shape[1], w["test_weak"].shape, w["gallery"].shape
  (64, (10, 64), (70, 64))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from tfface.errors import ConfigError

__all__ = ["CONDITIONS", "WeakStrongConfig", "make_world", "oracle_samples"]

CONDITIONS = ("C0", "C1", "C2")


@dataclass(frozen=True)
class WeakStrongConfig:
    condition: str = "C2"
    lost: int = 4  # j: coordinates lost by the weak modality (C1, C2)
    latent_dim: int = 16  # k
    strong_dim: int = 64
    weak_dim: int = 64
    strong_noise: float = 0.3
    weak_noise: float = 0.1
    train_identities: int = 3000
    strong_per_identity: int = 20
    weak_train_identities: int = 1000  # the first ones of the training identities
    val_identities: int = 300
    test_identities: int = 500
    gallery_per_identity: int = 5
    distractors: int = 1000
    seed: int = 0

    def __post_init__(self):
        if self.condition not in CONDITIONS:
            raise ConfigError(f"world.condition: {self.condition!r} is not one of {CONDITIONS}")
        if self.condition != "C0" and not 1 <= self.lost <= self.latent_dim:
            raise ConfigError(f"world.lost: need 1 <= lost <= latent_dim ({self.latent_dim}), got {self.lost}")
        for key in ("latent_dim", "strong_dim", "weak_dim", "train_identities", "val_identities", "test_identities",
                    "weak_train_identities"):
            if getattr(self, key) < 1:
                raise ConfigError(f"world.{key}: must be >= 1, got {getattr(self, key)}")
        if self.weak_train_identities > self.train_identities:
            raise ConfigError(f"world.weak_train_identities ({self.weak_train_identities}) exceeds train_identities "
                              f"({self.train_identities})")
        if self.strong_per_identity < 2 or self.gallery_per_identity < 1 or self.distractors < 0:
            raise ConfigError("world: need strong_per_identity >= 2, gallery_per_identity >= 1, distractors >= 0")

    def replace(self, **kw) -> WeakStrongConfig:
        return dataclasses.replace(self, **kw)


def _normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def _h(u: np.ndarray, cfg: WeakStrongConfig) -> np.ndarray:
    if cfg.condition == "C0" or cfg.lost == 0:
        return u
    v = u.copy()
    j = cfg.lost
    v[..., -j:] = 0.0 if cfg.condition == "C1" else np.abs(v[..., -j:])
    return v


def _matrices(cfg: WeakStrongConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([cfg.seed, 7])
    a = rng.normal(size=(cfg.strong_dim, cfg.latent_dim)) / np.sqrt(cfg.latent_dim)
    b = rng.normal(size=(cfg.weak_dim, cfg.latent_dim)) / np.sqrt(cfg.latent_dim)
    return a, b


def _strong(u: np.ndarray, a: np.ndarray, cfg: WeakStrongConfig, rng) -> np.ndarray:
    return _normalize(u @ a.T + cfg.strong_noise * rng.normal(size=u.shape[:-1] + (cfg.strong_dim,)))


def _weak(u: np.ndarray, b: np.ndarray, cfg: WeakStrongConfig, rng) -> np.ndarray:
    return (_h(u, cfg) @ b.T + cfg.weak_noise * rng.normal(size=u.shape[:-1] + (cfg.weak_dim,))).astype(np.float32)


def make_world(cfg: WeakStrongConfig) -> dict[str, np.ndarray]:
    """The splits as float32 features and int64 labels (module docstring). Labels: training identities
    ``0..T-1``; validation, test and distractor identities continue after them."""
    rng = np.random.default_rng([cfg.seed, 1])
    a, b = _matrices(cfg)
    n_tr, n_va, n_te = cfg.train_identities, cfg.val_identities, cfg.test_identities
    u = rng.normal(size=(n_tr + n_va + n_te + cfg.distractors, cfg.latent_dim))
    per = cfg.strong_per_identity
    strong = _strong(np.repeat(u[:n_tr], per, axis=0), a, cfg, rng)
    labels = np.repeat(np.arange(n_tr), per)
    # identities with a weak sample lose their "source" strong image (the first of each)
    drop = (np.arange(len(labels)) % per == 0) & (labels < cfg.weak_train_identities)
    out = {"train_strong": strong[~drop], "train_strong_labels": labels[~drop].astype(np.int64),
           "train_weak": _weak(u[:cfg.weak_train_identities], b, cfg, rng),
           "train_weak_labels": np.arange(cfg.weak_train_identities, dtype=np.int64)}
    gal = cfg.gallery_per_identity
    for split, lo, n in (("val", n_tr, n_va), ("test", n_tr + n_va, n_te)):
        ids = np.arange(lo, lo + n)
        out[f"{split}_weak"] = _weak(u[ids], b, cfg, rng)
        out[f"{split}_labels"] = ids.astype(np.int64)
        out[f"{split}_latent"] = u[ids].astype(np.float32)
        out[f"{split}_gallery"] = _strong(np.repeat(u[ids], gal, axis=0), a, cfg, rng)
        out[f"{split}_gallery_labels"] = np.repeat(ids, gal).astype(np.int64)
    d_ids = np.arange(n_tr + n_va + n_te, len(u))
    distract = _strong(u[d_ids], a, cfg, rng)
    out["gallery"] = np.concatenate([out.pop("test_gallery"), distract])
    out["gallery_labels"] = np.concatenate([out.pop("test_gallery_labels"), d_ids.astype(np.int64)])
    return out


def oracle_samples(weak: np.ndarray, cfg: WeakStrongConfig, m: int, seed: int = 0) -> np.ndarray:
    """``(Q, m, strong_dim)`` draws from the true ``p(s | w)`` of each weak row (module docstring)."""
    rng = np.random.default_rng([cfg.seed, 99, seed])
    a, b = _matrices(cfg)
    k = cfg.latent_dim
    keep = np.ones(k, bool)
    if cfg.condition == "C1":
        keep[-cfg.lost:] = False
    bk = b[:, keep]
    # Gaussian posterior of the kept coordinates of v = h(u) given w = B v + noise (prior N(0, I))
    prec = np.eye(keep.sum()) + bk.T @ bk / cfg.weak_noise ** 2
    cov = np.linalg.inv(prec)
    mean = np.asarray(weak, np.float64) @ bk @ cov.T / cfg.weak_noise ** 2  # (Q, kept)
    chol = np.linalg.cholesky(cov)
    q = len(mean)
    v = np.zeros((q, m, k))
    v[:, :, keep] = mean[:, None, :] + rng.normal(size=(q, m, keep.sum())) @ chol.T
    if cfg.condition == "C1":
        v[:, :, ~keep] = rng.normal(size=(q, m, (~keep).sum()))  # the prior: nothing is known of them
    elif cfg.condition == "C2":
        j = cfg.lost
        v[:, :, -j:] = np.abs(v[:, :, -j:]) * rng.choice([-1.0, 1.0], size=(q, m, j))
    return _strong(v, a, cfg, rng)
