"""Long-tailed face sets from the built-in 3DMM world: FTL's controlled under-represented (UR) setting.

The paper (Sec. 4.3) takes the classes with many images, keeps the top ones as regular and truncates the
rest to 5 random images each ("faked" UR classes). Here the built-in renderer plays MS-Celeb-1M: every
identity is rendered with ``pool + val + test`` images (nuisance recorded per image, yaw included), then

- regular identities keep their whole training pool (``train_per_regular`` images);
- UR identities keep ``train_per_ur`` of theirs: random ones, or with ``biased_ur`` only images whose yaw
  lies in ``biased_yaw`` (one side of the face: the pose-biased UR centres of the paper's Fig. 3);
- ``full: true`` keeps the UR identities' whole pool: the "full" upper bound (the paper's 60K0K);
- ``num_ur: 0`` is the lower bound (R100-U0; the paper's 10K0K);
- validation and test images (``val_per_class``, ``test_per_class`` each, never trained on) for every
  class; unseen identities (``unseen_identities`` x ``unseen_per_identity``) for pair verification.

Images are the renders made grey (the paper's 100 x 100 faces are one channel) and area-resized to
``image_size``, in [0, 1]. :data:`SPLITS` names the spec's splits (R100-U0, R100-U100, R100-U300, the
full upper bounds and the biased variant).

Example:
  >>> from tfface.data.long_tail import LongTailConfig, make_long_tail
  >>> d = make_long_tail(LongTailConfig(num_regular=4, num_ur=4, train_per_regular=12, val_per_class=1,
  ...                                   test_per_class=2, unseen_identities=3, unseen_per_identity=2),
  ...                    progress=False)
  >>> d["train_x"].shape[1:], d["counts"].tolist()
  ((32, 32, 1), [12, 12, 12, 12, 5, 5, 5, 5])
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np

from tfface.config import check_range
from tfface.errors import ConfigError, DataError

__all__ = ["SPLITS", "LongTailConfig", "make_long_tail"]

RENDER_CHUNK = 100  # identities per cached render
UNSEEN_OFFSET = 50_000  # unseen identities start here (after the largest long-tailed set)

#: The spec's splits (section 8.2) at its 1/100 scale of Table 1.
SPLITS: dict[str, dict] = {
    "R100-U0": {"num_ur": 0},
    "R100-U100": {"num_ur": 100},
    "R100-U300": {"num_ur": 300},
    "R100+U100-full": {"num_ur": 100, "full": True},
    "R100+U300-full": {"num_ur": 300, "full": True},
    "R100-U100-biased": {"num_ur": 100, "biased_ur": True},
}


@dataclass(frozen=True)
class LongTailConfig:
    num_regular: int = 100
    num_ur: int = 100
    train_per_regular: int = 60  # also the pool UR images are drawn from
    train_per_ur: int = 5
    val_per_class: int = 5
    test_per_class: int = 20
    full: bool = False  # UR identities keep their whole pool (the upper bound)
    biased_ur: bool = False  # UR training images all from one side (yaw in biased_yaw)
    biased_yaw: tuple[float, float] = (10.5, 28.0)  # degrees: the spec's p in [0.3, 0.8] of the 35 degree range
    unseen_identities: int = 100
    unseen_per_identity: int = 10
    image_size: int = 32
    render_size: int = 64
    seed: int = 0
    identity_offset: int = 700_000  # identities of their own (the presets train on others)
    nuisance: dict = field(default_factory=dict)  # NuisanceConfig fields (the built-in ranges by default)

    def __post_init__(self):
        check_range("data.num_regular", self.num_regular, 1, UNSEEN_OFFSET)
        check_range("data.num_ur", self.num_ur, 0, UNSEEN_OFFSET - self.num_regular)
        for key in ("val_per_class", "unseen_identities"):
            check_range(f"data.{key}", getattr(self, key), 0)
        check_range("data.train_per_regular", self.train_per_regular, 2)
        check_range("data.train_per_ur", self.train_per_ur, 1, self.train_per_regular)
        check_range("data.test_per_class", self.test_per_class, 1)
        check_range("data.unseen_per_identity", self.unseen_per_identity, 2)
        check_range("data.image_size", self.image_size, 8, self.render_size)
        lo, hi = self.biased_yaw
        if lo >= hi:
            raise ConfigError(f"data.biased_yaw: low {lo} must be below high {hi}")

    def replace(self, **kw) -> LongTailConfig:
        return dataclasses.replace(self, **kw)


def _grey(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 RGB (N, S, S, 3) -> float32 grey (N, size, size, 1) in [0, 1] (area resize)."""
    import tensorflow as tf

    grey = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    grey = grey[..., None]
    if grey.shape[1] != size:
        grey = tf.image.resize(grey, (size, size), method="area").numpy()
    return grey.astype(np.float32)


def make_long_tail(cfg: LongTailConfig, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """The arrays of one long-tailed set (module docstring).

    Keys: ``train_x``, ``train_y``, ``train_yaw`` (degrees), ``val_x``, ``val_y``, ``test_x``, ``test_y``,
    ``unseen_x``, ``unseen_y``; ``counts`` (training images per class), ``num_regular`` (classes
    ``0..num_regular - 1`` are regular, the rest UR), ``num_classes``."""
    from tfface.config import from_dict
    from tfface.data.builtin import render_dataset
    from tfface.data.synthetic import FaceDataConfig, NuisanceConfig

    nuisance = from_dict(NuisanceConfig, dict(cfg.nuisance), where="data.nuisance")
    n_classes = cfg.num_regular + cfg.num_ur
    per = cfg.train_per_regular + cfg.val_per_class + cfg.test_per_class
    xs, yaws, labs = [], [], []
    for start in range(0, n_classes, RENDER_CHUNK):  # chunks: a larger split re-uses a smaller one's renders
        faces = render_dataset(FaceDataConfig(num_identities=min(RENDER_CHUNK, n_classes - start),
                                              images_per_identity=per, image_size=cfg.render_size, seed=cfg.seed,
                                              identity_offset=cfg.identity_offset + start, nuisance=nuisance),
                               cache_dir=cache_dir, progress=progress)
        xs.append(_grey(faces.images, cfg.image_size))
        yaws.append(np.asarray(faces.nuisance["yaw"], np.float32))
        labs.append(np.asarray(faces.labels, np.int64) + start)
    x, yaw, labels = np.concatenate(xs), np.concatenate(yaws), np.concatenate(labs)
    train, val, test = [], [], []
    for c in range(n_classes):
        rows = np.flatnonzero(labels == c)
        pool = rows[:cfg.train_per_regular]
        val.append(rows[cfg.train_per_regular:cfg.train_per_regular + cfg.val_per_class])
        test.append(rows[cfg.train_per_regular + cfg.val_per_class:])
        if c < cfg.num_regular or cfg.full:
            train.append(pool)
            continue
        if cfg.biased_ur:
            lo, hi = cfg.biased_yaw
            pool = pool[(yaw[pool] >= lo) & (yaw[pool] <= hi)]
            if len(pool) < cfg.train_per_ur:
                raise DataError(f"data.biased_yaw: UR identity {c} has {len(pool)} of its {cfg.train_per_regular} "
                                f"pool images with yaw in {cfg.biased_yaw}, fewer than train_per_ur = "
                                f"{cfg.train_per_ur}; widen biased_yaw or raise train_per_regular")
        rng = np.random.default_rng((cfg.seed, c))  # per class: U100's images are U300's first 100 classes'
        train.append(np.sort(rng.choice(pool, cfg.train_per_ur, replace=False)))
    train_i, val_i, test_i = (np.concatenate(v) for v in (train, val, test))
    out = {"train_x": x[train_i], "train_y": labels[train_i], "train_yaw": yaw[train_i],
           "val_x": x[val_i], "val_y": labels[val_i], "test_x": x[test_i], "test_y": labels[test_i],
           "counts": np.bincount(labels[train_i], minlength=n_classes), "num_regular": cfg.num_regular,
           "num_classes": n_classes}
    if cfg.unseen_identities:
        unseen = render_dataset(FaceDataConfig(num_identities=cfg.unseen_identities,
                                               images_per_identity=cfg.unseen_per_identity,
                                               image_size=cfg.render_size, seed=cfg.seed + 1,
                                               identity_offset=cfg.identity_offset + UNSEEN_OFFSET,
                                               nuisance=nuisance),
                                cache_dir=cache_dir, progress=progress)
        out["unseen_x"] = _grey(unseen.images, cfg.image_size)
        out["unseen_y"] = np.asarray(unseen.labels, np.int64)
    return out
