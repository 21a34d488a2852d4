"""One optimizer and learning-rate schedule factory for every method.

- optimizers: ``sgd`` (momentum), ``adam`` and ``adamw`` (``beta_1`` configurable: DCGAN-style GAN
  training uses 0.5);
- schedules: ``constant``; ``cosine`` (linear warm-up from 1% of the rate, then cosine decay to
  ``cosine_alpha`` of it); ``piecewise`` (the rate times ``decay**k`` after the k-th boundary, the
  boundaries given as fractions of the total steps);
- weight decay: ``decoupled`` (the optimizer's own ``weight_decay``: ``w -= lr * wd * w``, as Keras'
  SGD and AdamW do) or ``coupled`` (PyTorch-style L2, ``g + wd * w`` added to the gradient before the
  update; applied by :meth:`tfface.methods.base.MethodModel.apply`, so the optimizer gets none).

``step_scale`` multiplies the schedule's step counts: Keras counts each optimizer's own applications,
so an optimizer applied twice per batch (R3AN's G and E) needs ``step_scale=2`` for a schedule
counted in batches.

Example:
  >>> from tfface.training.optimizers import OptimizerSpec, make_optimizer
  >>> opt = make_optimizer(OptimizerSpec("sgd", 0.1, schedule="piecewise", boundaries=(0.5,)), total_steps=10)
  >>> [round(float(opt.learning_rate), 4) for _ in range(1)]
  [0.1]
  >>> type(make_optimizer(OptimizerSpec("adamw", 1e-3, weight_decay=5e-4), total_steps=10)).__name__
  'AdamW'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tfface.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "piecewise")


@dataclass(frozen=True)
class OptimizerSpec:
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    learning_rate: float = 0.1
    schedule: Literal["constant", "cosine", "piecewise"] = "constant"
    warmup_steps: int = 0  # cosine: linear warm-up over this many steps
    cosine_alpha: float = 0.01  # cosine: final rate as a fraction of learning_rate
    boundaries: tuple[float, ...] = ()  # piecewise: fractions of the total steps
    decay: float = 0.1  # piecewise: factor at each boundary
    momentum: float = 0.9  # sgd
    beta_1: float = 0.9  # adam, adamw
    weight_decay: float = 0.0
    weight_decay_mode: Literal["decoupled", "coupled"] = "decoupled"

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer: {self.optimizer!r} is not one of {list(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule: {self.schedule!r} is not one of {list(SCHEDULES)}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate: must be > 0, got {self.learning_rate}")
        if not 0 <= self.momentum < 1 or not 0 <= self.beta_1 < 1:
            raise ConfigError("momentum, beta_1: must be in [0, 1)")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay: must be >= 0, got {self.weight_decay}")
        b = tuple(self.boundaries)
        if any(not 0 < x < 1 for x in b) or list(b) != sorted(b):
            raise ConfigError(f"boundaries: must be increasing fractions in (0, 1), got {list(b)}")
        if not 0 < self.decay <= 1:
            raise ConfigError(f"decay: must be in (0, 1], got {self.decay}")


def make_schedule(spec: OptimizerSpec, total_steps: int, step_scale: int = 1):
    """The learning rate (a float or a Keras schedule) of ``spec`` over ``total_steps`` steps."""
    import keras

    total = max(1, int(total_steps))
    lr = spec.learning_rate
    if spec.schedule == "constant":
        return lr
    if spec.schedule == "piecewise":
        if not spec.boundaries:
            return lr
        bounds = [max(1, int(round(b * total))) * step_scale for b in spec.boundaries]
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            bounds, [lr * spec.decay ** k for k in range(len(bounds) + 1)])
    warmup = int(spec.warmup_steps) * step_scale
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr * (0.01 if warmup else 1.0),
        decay_steps=max(1, total * step_scale - warmup),
        alpha=spec.cosine_alpha,
        warmup_target=lr if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(spec: OptimizerSpec, total_steps: int, step_scale: int = 1, name: str | None = None):
    """A Keras optimizer for ``spec`` with its schedule over ``total_steps`` (see the module docstring).
    With ``weight_decay_mode="coupled"`` the optimizer has no weight decay of its own: set the model's
    ``coupled_weight_decay`` to ``spec.weight_decay``."""
    import keras

    lr = make_schedule(spec, total_steps, step_scale)
    wd = spec.weight_decay if spec.weight_decay_mode == "decoupled" and spec.weight_decay else None
    kw = {"name": name} if name else {}
    if spec.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=spec.momentum, weight_decay=wd, **kw)
    if spec.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, beta_1=spec.beta_1, weight_decay=wd or 0.0, **kw)
    return keras.optimizers.Adam(learning_rate=lr, beta_1=spec.beta_1, weight_decay=wd, **kw)
