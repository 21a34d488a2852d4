"""The base of every method's Keras model: global-batch loss averaging, replica-correct logging, the
compile guard, loss scaling, coupled weight decay and ``get_config`` from a config dataclass.

Every method (:class:`~tfface.methods.recognizer.Recognizer`, :class:`~tfface.methods.r3an.R3AN`,
:class:`~tfface.methods.ddl.DDL`, ...) overrides ``train_step`` and writes it as the paper's
algorithm box, with the arithmetic of distributed training kept here, once:

- :meth:`MethodModel.average` averages a per-example loss over the GLOBAL batch
  (``tf.nn.compute_average_loss`` with the all-reduced batch size), so the gradients summed over
  the replicas of a ``tf.distribute`` strategy equal one device's on the same global batch;
- :meth:`MethodModel.track` logs each loss as the global mean: a replica's share is multiplied by the
  number of replicas before it enters its ``Mean`` tracker (whose state is summed over replicas);
  values that are already global (computed on all-gathered tensors) go through ``track(...,
  shared=True)``;
- :meth:`MethodModel.apply` applies gradients with an optimizer, adding PyTorch-style coupled L2
  weight decay (``g + wd * w``) when the model's ``coupled_weight_decay`` is set;
- :meth:`MethodModel.compile` refuses ``loss=`` / ``metrics=`` (the losses are the method's own),
  wraps the optimizer in a ``LossScaleOptimizer`` under ``mixed_float16`` and builds it on the
  trainable variables at once (optimizers created inside the first distributed step fail under
  ``MirroredStrategy``, and building there makes ``tf.function`` trace twice).

Subclasses list their tracked losses in ``loss_names`` (created by :meth:`MethodModel.init_trackers`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import keras
import tensorflow as tf

from tfface.distribute import global_batch_size
from tfface.errors import ConfigError

_UNSUPPORTED = ("loss", "metrics", "weighted_metrics", "loss_weights")


def num_replicas() -> int:
    """Replicas of the strategy the step runs under (1 outside any strategy)."""
    return int(tf.distribute.get_strategy().num_replicas_in_sync)


class MethodModel(keras.Model):
    """A Keras model whose ``train_step`` is a method's algorithm (see the module docstring).

    Attributes:
      config: the method's config dataclass when it has one (serialised by :meth:`get_config`).
      coupled_weight_decay: ``wd`` of coupled L2 weight decay applied by :meth:`apply` (0: none).
    """

    config = None
    coupled_weight_decay: float = 0.0

    # ------------------------------------------------------------------------------- logging
    def init_trackers(self, names: Iterable[str], prefix: str = "") -> None:
        """One ``Mean`` tracker per loss name, logged as ``<prefix><name>``."""
        self.trackers = {n: keras.metrics.Mean(name=f"{prefix}{n}") for n in names}

    @property
    def metrics(self):
        return list(getattr(self, "trackers", {}).values()) + list(self.extra_metrics())

    def extra_metrics(self) -> list:
        """Metrics other than the loss trackers (e.g. an accuracy); empty by default."""
        return []

    def track(self, losses: Mapping[str, tf.Tensor], shared: bool = False) -> None:
        """Update the trackers with this replica's shares of global means (``shared=False``: multiplied
        by the number of replicas) or with values that are the same global value on every replica."""
        scale = 1.0 if shared else float(num_replicas())
        for name, value in losses.items():
            if name in self.trackers:
                self.trackers[name].update_state(value * scale)

    def logs(self) -> dict:
        return {m.name: m.result() for m in self.metrics}

    # ------------------------------------------------------------------------------- losses
    @staticmethod
    def average(per_example: tf.Tensor) -> tf.Tensor:
        """This replica's share of the global-batch mean of ``per_example`` (float32, shape [b])."""
        per_example = tf.cast(per_example, tf.float32)
        return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size(tf.shape(per_example)[0]))

    def regularization(self) -> tf.Tensor:
        """The layers' regularisation losses, scaled for the replicas (0 when there are none)."""
        if not self.losses:
            return tf.constant(0.0)
        return tf.nn.scale_regularization_loss(tf.add_n([tf.cast(v, tf.float32) for v in self.losses]))

    def apply(self, optimizer, grads, variables) -> None:
        """``optimizer.apply`` with coupled L2 weight decay (``g + wd * w``) when configured."""
        wd = float(self.coupled_weight_decay or 0.0)
        if wd:
            grads = [None if g is None else g + wd * v for g, v in zip(grads, variables, strict=True)]
        optimizer.apply(grads, variables)

    # ------------------------------------------------------------------------------ compile
    def compile(self, optimizer="sgd", **kwargs):
        """``optimizer`` (an instance or name); ``kwargs`` go to ``keras.Model.compile`` (``jit_compile``,
        ``steps_per_execution``, ``run_eagerly``). The losses are built in: ``loss=``, ``metrics=``,
        ``weighted_metrics=`` and ``loss_weights=`` are errors."""
        name = type(self).__name__
        for key in _UNSUPPORTED:
            if kwargs.pop(key, None) is not None:
                raise ConfigError(f"{name}.compile: {key}= is not supported (the method's losses are built in "
                                  f"and tracked by the model)")
        kwargs.pop("auto_scale_loss", None)
        optimizer = self.loss_scaled(keras.optimizers.get(optimizer)) if optimizer is not None else None
        if not self.built:
            self.build_for_compile()
        self._compile_kwargs = dict(kwargs)
        super().compile(optimizer=optimizer, auto_scale_loss=False, **kwargs)
        if optimizer is not None and self.trainable_variables:
            self.optimizer.build(self.trainable_variables)

    def build_for_compile(self) -> None:
        """Build the model before its optimizer is built (subclasses with inputs override)."""
        self.built = True

    def loss_scaled(self, optimizer):
        """``optimizer`` wrapped in a ``LossScaleOptimizer`` under a ``mixed_float16`` policy."""
        mixed = "mixed_float16" in (keras.mixed_precision.global_policy().name, self.dtype_policy.name)
        if mixed and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return keras.optimizers.LossScaleOptimizer(optimizer, name=f"{optimizer.name}_loss_scale")
        return optimizer

    def get_compile_config(self):
        if not self.compiled or self.optimizer is None:
            return {}
        return {"optimizer": keras.saving.serialize_keras_object(self.optimizer),
                **getattr(self, "_compile_kwargs", {})}

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)

    # -------------------------------------------------------------------------- serialisation
    def get_config(self):
        out = {"name": self.name, "trainable": self.trainable}
        if self.config is not None and dataclasses.is_dataclass(self.config):
            out["config"] = dataclasses.asdict(self.config)
        return out


def from_nested_config(cls, config: dict, keys: Iterable[str]):
    """``cls(**config)`` with the Keras objects under ``keys`` deserialised first (the shared
    ``from_config`` of models that hold nested networks). The caller's dict is left intact:
    Keras' deserialisation consumes the nested dicts it reads."""
    import copy

    config = copy.deepcopy(config)
    for key in keys:
        config[key] = keras.saving.deserialize_keras_object(config[key])
    return cls(**config)
