"""The base of adversarial methods (R3AN now, WSGAN and GANFaces next): one optimizer per network,
built at compile, and the discriminator / generator steps and loss forms written once.

A subclass declares its networks and optimizers in ``compile`` through :meth:`AdversarialModel.set_optimizers`
and writes ``train_step`` as its algorithm box out of :meth:`AdversarialModel.step` calls::

    def train_step(self, data):
        x, real = ...
        logs = self.step("d", lambda: self.discriminator_loss(self.D(real), self.D(self.G(x))), self.D)
        logs |= self.step("g", lambda: self.generator_loss(self.D(self.G(x))), self.G)
        ...

Loss forms (logits, any shape; per example means over the rest):

- discriminator: ``BCE(D(real), 1) + BCE(D(fake), 0)`` (maximising Goodfellow's value function);
- generator ``"non_saturating"`` (DCGAN): ``BCE(D(fake), 1) = -log D(fake)``;
  ``"saturating"`` (the minimax form): ``log(1 - D(fake)) = -BCE(D(fake), 0)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import keras
import tensorflow as tf

from tfface.errors import ConfigError
from tfface.methods.base import MethodModel

GENERATOR_LOSSES = ("non_saturating", "saturating")


def bce(label: float, logits: tf.Tensor) -> tf.Tensor:
    """Per-example sigmoid cross-entropy of ``logits`` against a constant ``label`` (mean over non-batch axes)."""
    logits = tf.cast(logits, tf.float32)
    logits = tf.reshape(logits, [tf.shape(logits)[0], -1])
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.fill(tf.shape(logits), label), logits), -1)


def discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """Per-example ``BCE(D(real), 1) + BCE(D(fake), 0)``."""
    return bce(1.0, real_logits) + bce(0.0, fake_logits)


def generator_loss(fake_logits: tf.Tensor, form: str = "non_saturating") -> tf.Tensor:
    """Per-example generator loss: ``-log D(fake)`` (non-saturating) or ``log(1 - D(fake))`` (saturating)."""
    if form == "non_saturating":
        return bce(1.0, fake_logits)
    if form == "saturating":
        return -bce(0.0, fake_logits)
    raise ConfigError(f"adversarial loss: {form!r} is not one of {list(GENERATOR_LOSSES)}")


class AdversarialModel(MethodModel):
    """A :class:`MethodModel` with several networks, each with its own optimizer.

    ``optimizers``: ``{name: optimizer}``; ``networks``: ``{name: keras.Model}`` it updates. Both are
    set by :meth:`set_optimizers` inside ``compile`` (under the strategy scope), which also builds
    every optimizer on its network's variables.
    """

    def set_optimizers(self, pairs: Mapping[str, tuple[keras.optimizers.Optimizer, keras.Model]]) -> None:
        self.optimizers = {}
        self.networks = {}
        for name, (opt, net) in pairs.items():
            if opt is None or net is None:
                continue
            opt = self.loss_scaled(opt)
            opt.build(net.trainable_variables)
            self.optimizers[name] = opt
            self.networks[name] = net

    def step(self, names: str | tuple[str, ...], loss_fn: Callable[[], tf.Tensor | tuple[tf.Tensor, dict]],
             scale: float = 1.0) -> dict:
        """One gradient step: ``loss_fn()`` (this replica's share of a global mean, or ``(share, logs)``)
        times ``scale``, differentiated w.r.t. the networks ``names`` and applied by each one's own
        optimizer. Returns the logs (``{}`` or what ``loss_fn`` returned)."""
        names = (names,) if isinstance(names, str) else tuple(names)
        variables = [self.networks[n].trainable_variables for n in names]
        with tf.GradientTape() as tape:
            out = loss_fn()
            loss, logs = out if isinstance(out, tuple) else (out, {})
            scaled = scale * loss
        flat = [v for vs in variables for v in vs]
        grads = tape.gradient(scaled, flat)
        start = 0
        for n, vs in zip(names, variables, strict=True):
            self.apply(self.optimizers[n], grads[start:start + len(vs)], vs)
            start += len(vs)
        return logs

    def learning_rates(self) -> dict[str, float]:
        """The current learning rate of each optimizer (for logs and tests)."""
        return {f"{n}_optimizer": float(keras.ops.convert_to_numpy(o.learning_rate))
                for n, o in getattr(self, "optimizers", {}).items()}
