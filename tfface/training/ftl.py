"""Training FTL and its baselines (spec 8.2): pretraining, then one variant's schedule, all as driver stages.

- :func:`pretrain`: Eq. 4 on every module (Enc, Dec, R, FC), no transfer, instance sampling, Adam at the
  pretraining rate; the checkpoint every variant of a seed continues from;
- :func:`train_variant`: from that checkpoint, a :data:`~tfface.methods.ftl.VARIANTS` row for the same
  number of iterations (``cycles x 2 x iterations``):

  - ``joint`` rows (sfmx, sfmx + m-L2, re-sampling): Eq. 4 on every module, at the stage rate;
  - ``alternating`` rows (FTL and its ablations): per cycle, ``UpdateStats`` (centres, Q, h over the whole
    training set, Enc in inference mode, flips included) and Stage 1 (R + FC, three batches), then
    Stage 2 (Enc + Dec + R, FC fixed); Stage 1 only runs Stage 1 in both halves of a cycle.

Each stage is a :class:`~tfface.training.driver.Stage` of the one driver, whose ``before`` hook updates
the statistics and whose dataset is built from them. ``on_stage`` (optional) is called after every
stage with ``(stage name, networks, global iteration, the stage's history)``: the recipe runner logs validation accuracy and
the weight norms there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfface.errors import ConfigError
from tfface.methods.ftl.config import VARIANTS, FTLConfig

__all__ = ["FTLRun", "compute_stats", "flip", "pretrain", "train_variant"]


def flip(x: np.ndarray) -> np.ndarray:
    """Horizontal flip of [N, H, W, C] images."""
    return np.asarray(x)[:, :, ::-1]


def compute_stats(nets, data: dict, config: FTLConfig):
    """``UpdateStats`` with the current encoder over the whole training set (:class:`FTLStats`)."""
    from tfface.methods.ftl.stats import update_stats

    g, _ = nets.features(data["train_x"])
    g_flip, _ = nets.features(flip(data["train_x"]))
    regular = np.arange(data["num_classes"]) < data["num_regular"]
    return update_stats(g, g_flip, data["train_y"], regular, data["train_yaw"], config.pose_threshold, config.energy,
                        config.pca_components)


@dataclass
class FTLRun:
    nets: Any
    history: dict = field(default_factory=dict)
    stats: list = field(default_factory=list)  # per cycle: {"components", "hard"}
    seconds: float = 0.0
    replicas: int = 1


def pretrain(config: FTLConfig, data: dict, epochs: int, alpha_reg: float | None = None, strategy=None,
             verbose: int | str = 0, callbacks=()) -> tuple[list, dict]:
    """``(network weights, history)`` after ``epochs`` of Eq. 4 (``alpha_reg`` None: the config's)."""
    from tfface.methods.ftl import FTLJoint, FTLNetworks
    from tfface.methods.ftl.data import joint_batches
    from tfface.training.driver import Run, Stage

    run = Run(seed=config.seed, strategy=strategy)
    with run.scope():
        nets = FTLNetworks(config, data["num_classes"])
        phase = FTLJoint(nets, FTLJoint.PRETRAIN, alpha_reg=alpha_reg)
        phase.compile(jit_compile=False)
    steps = math.ceil(len(data["train_y"]) / config.batch_size)
    ds = joint_batches(data["train_x"], data["train_y"], steps * epochs, config.batch_size, "instance", config.seed)
    hist = run.fit(phase, [Stage("pretrain", ds, epochs, steps_per_epoch=steps)], callbacks, verbose)
    return nets.get_weights(), hist


def train_variant(variant: str, config: FTLConfig, data: dict, pretrained: list, cycles: int, iterations: int,
                  strategy=None, verbose: int | str = 0,
                  on_stage: Callable[[str, Any, int, dict], None] | None = None) -> FTLRun:
    """Continue ``pretrained`` with ``variant`` (module docstring)."""
    from tfface.methods.ftl import FTLJoint, FTLNetworks, FTLStage1
    from tfface.methods.ftl.data import joint_batches, stage1_batches
    from tfface.training.driver import Run, Stage

    if variant not in VARIANTS:
        raise ConfigError(f"variant: unknown {variant!r}; known: {', '.join(VARIANTS)}")
    if cycles < 1 or iterations < 1:
        raise ConfigError(f"cycles and iterations must be >= 1, got {cycles}, {iterations}")
    v = VARIANTS[variant]
    run = Run(seed=config.seed, strategy=strategy)
    lr = config.stage_learning_rate
    x, y, bs, seed = data["train_x"], data["train_y"], config.batch_size, config.seed
    with run.scope():
        nets = FTLNetworks(config, data["num_classes"])
        nets.set_weights(pretrained)
        if v.schedule == "joint":
            joint = FTLJoint(nets, FTLJoint.PRETRAIN, learning_rate=lr, alpha_reg=None if v.m_l2 else 0.0)
            joint.compile(jit_compile=False)
        else:
            s1 = FTLStage1(nets, v.transfer, learning_rate=lr)
            s1.compile(jit_compile=False)
            s2 = FTLJoint(nets, FTLJoint.STAGE2, learning_rate=lr, alpha_reg=None if v.m_l2 else 0.0)
            s2.compile(jit_compile=False)
    out = FTLRun(nets, replicas=run.replicas)
    t0 = time.perf_counter()
    ur_classes = np.arange(data["num_regular"], data["num_classes"])
    state: dict = {}

    def update(_model):
        state["stats"] = compute_stats(nets, data, config)
        s1.set_stats(state["stats"])
        out.stats.append({"components": state["stats"].components, "hard": int(len(state["stats"].hard))})

    def stage1_data(c, half):
        return lambda: stage1_batches(x, y, state["stats"].hard, ur_classes, iterations, bs, config.feature_dim,
                                      seed=seed * 7919 + 2 * c + half)

    step = 0
    for c in range(cycles):
        if v.schedule == "joint":
            stages = [Stage(f"joint/{c}", joint_batches(x, y, 2 * iterations, bs, v.sampling, seed * 7919 + c), 1,
                            steps_per_epoch=2 * iterations, model=joint)]
        else:
            stages = [Stage(f"stage1/{c}", stage1_data(c, 0), 1, steps_per_epoch=iterations, model=s1, before=update)]
            if v.stage2:
                stages.append(Stage(f"stage2/{c}", joint_batches(x, y, iterations, bs, "instance", seed * 7919 + c), 1,
                                    steps_per_epoch=iterations, model=s2))
            else:  # Stage 1 only: Stage 1 in both halves (Enc is fixed: the statistics do not change)
                stages.append(Stage(f"stage1b/{c}", stage1_data(c, 1), 1, steps_per_epoch=iterations, model=s1))
        for stage in stages:
            out.history |= run.fit(None, [stage], verbose=verbose)
            step += stage.steps_per_epoch
            if on_stage is not None:
                on_stage(stage.name, nets, step, out.history[stage.name])
    out.seconds = time.perf_counter() - t0
    return out
