"""WSGAN as one Keras model whose ``train_step`` is the paper's alternating schedule (Sec. 3, Fig. 3).

One ``train_step`` is one outer iteration: ``n_critic`` D-phases, then one G-phase.

- D-phase (Eq. 9), ``J_D(D, E, F_S, W_C) = L_A^d + nu L_C^d + mu L_E``: strong features are D's real
  samples, ``G(F_W(x_w), z)`` from the fixed G its fake ones; ``L_A^d = E[D(fake)] - E[D(real)]``
  (Eq. 4, real and fake in separate calls so each has its own batch statistics, spec A16); W_C learns
  from the strong samples (Eq. 6), E regresses z from the fake ones (Eq. 7, the L2 norm, not squared).
  D, E, F_S and W_C each step with their own optimizer; D's weights are clipped to ``[-c, c]`` (its
  optimizer applies the :class:`~tfface.methods.wsgan.nets.Clip` constraints) or, with
  ``critic_constraint="gp"``, D gets WGAN-GP's penalty instead. The fake branch sends no gradient into
  F unless ``d_phase_grad_through_weak`` (spec A3).
- G-phase (Eq. 8), ``J_G(G, F_W) = -L_A^g + lambda L_C^g + mu L_E``: only weak samples; D, W_C and E are
  fixed (they run, their optimizers do not apply), G and F_W step.

With a shared extractor (the paper's technical details) F_W and F_S are one network with one SGD.
Batches are dicts (see :func:`tfface.methods.wsgan.data.alternating_batches`): ``strong`` [B_s,
n_critic, ...], ``strong_labels`` [B_s, n_critic], ``weak`` [B_w, n_critic + 1, ...], ``weak_labels`` and
``z`` [B_w, n_critic + 1, z_dim]: slice ``k`` feeds the k-th D-phase, the last one the G-phase. z comes
from the input pipeline (seeded by position), so a run split over N replicas sees the same z as on one.

Example:
  >>> import numpy as np
  >>> from tfface.methods.wsgan import WSGAN, WSGANConfig
  >>> model = WSGAN(WSGANConfig(weak_dim=8, strong_dim=8, feature_dim=8, z_dim=4, width=16, n_critic=2), 5)
  >>> model.compile()
  >>> model.generate(np.zeros((3, 8), np.float32), m=4).shape
  (3, 4, 8)
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tfface.errors import ConfigError, DataError
from tfface.methods.adversarial import AdversarialModel
from tfface.methods.wsgan.config import WSGANConfig
from tfface.methods.wsgan.nets import classifier, critic, extractor, generator, z_encoder
from tfface.signatures import NOISE, STRONG_FEATURES, WEAK_FEATURES

__all__ = ["WSGAN"]


def _l2(x: tf.Tensor) -> tf.Tensor:
    """Per-example Euclidean norm with a finite gradient at 0."""
    return tf.sqrt(tf.reduce_sum(tf.square(tf.cast(x, tf.float32)), -1) + 1e-12)


class WSGAN(AdversarialModel):
    """F (F_W, F_S), G, D, E and W_C of one WSGAN run; see the module docstring."""

    def __init__(self, config: WSGANConfig | dict | None = None, num_classes: int = 2, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = WSGANConfig(**{k: tuple(v) if k == "input_shape" and v else v for k, v in config.items()})
        self.config = cfg = config or WSGANConfig()
        self.num_classes = int(num_classes)
        if self.num_classes < 2:
            raise ConfigError(f"WSGAN: num_classes must be >= 2 (the strong training identities), got {num_classes}")
        self.use_adv, self.use_cls, self.use_e, self.use_z = cfg.flags
        weak_in = cfg.input_shape or (cfg.weak_dim,)
        strong_in = cfg.input_shape or (cfg.strong_dim,)
        self.F_s = extractor(strong_in, cfg.feature_dim, cfg.extractor_hidden, name="extractor")
        self.F_w = self.F_s if cfg.shared_extractor else extractor(weak_in, cfg.feature_dim, cfg.extractor_hidden,
                                                                   name="weak_extractor")
        self.G = generator(cfg.feature_dim, cfg.z_dim, cfg.width, use_z=self.use_z, residual=cfg.residual)
        gp = cfg.critic_constraint == "gp"
        self.D = critic(cfg.feature_dim, cfg.width, clip=None if gp else cfg.clip, layer_norm=gp) \
            if self.use_adv else None
        self.E = z_encoder(cfg.feature_dim, cfg.z_dim, cfg.width) if self.use_e else None
        self.C = classifier(cfg.feature_dim, self.num_classes)
        self.init_trackers(self.loss_names, prefix="loss_")
        self.built = True

    @property
    def loss_names(self) -> list[str]:
        names = ["critic", "wasserstein", "adv"] if self.use_adv else []
        names += (["gp"] if self.use_adv and self.config.critic_constraint == "gp" else [])
        names += ["cls_strong", "cls_generated"] if self.use_cls else []
        return names + (["e"] if self.use_e else [])

    def call(self, inputs, training=False):
        """``[weak inputs, z]`` -> generated strong-space features."""
        x, z = inputs
        return self.G([self.F_w(x, training=training), z], training=training)

    # -------------------------------------------------------------------------------- compile
    def default_optimizers(self) -> dict:
        """The paper's: SGD (``f_learning_rate``, momentum) for F, W_C and E; RMSProp (or Adam) for G and D."""
        cfg = self.config

        def sgd(name):
            return keras.optimizers.SGD(cfg.f_learning_rate, momentum=cfg.f_momentum, name=name)

        def gd(name):
            if cfg.gd_optimizer == "adam":
                return keras.optimizers.Adam(cfg.gd_learning_rate, beta_1=0.5, beta_2=0.9, name=name)
            return keras.optimizers.RMSprop(cfg.gd_learning_rate, name=name)

        out = {"f": sgd("f_optimizer"), "c": sgd("c_optimizer"), "g": gd("g_optimizer")}
        if not self.config.shared_extractor:
            out["f_w"] = sgd("f_w_optimizer")
        if self.use_e:
            out["e"] = keras.optimizers.SGD(cfg.e_learning_rate or cfg.f_learning_rate, momentum=cfg.f_momentum,
                                            name="e_optimizer")
        if self.use_adv:
            out["d"] = gd("d_optimizer")
        return out

    def compile(self, optimizers: dict | None = None, **kwargs):
        """``optimizers``: ``{f, f_w (separate extractors only), c, e, g, d: optimizer}``, any left out
        taking :meth:`default_optimizers`'; each is built on its own network now."""
        opts = {**self.default_optimizers(), **(optimizers or {})}
        nets = {"f": self.F_s, "f_w": None if self.config.shared_extractor else self.F_w, "c": self.C,
                "e": self.E, "g": self.G, "d": self.D}
        unknown = set(opts) - set(nets)
        if unknown:
            raise ConfigError(f"WSGAN.compile: unknown optimizer {sorted(unknown)[0]!r}; known: {', '.join(nets)}")
        self.set_optimizers({n: (opts.get(n), net) for n, net in nets.items()})
        super().compile(optimizer=None, **kwargs)

    # ------------------------------------------------------------------------------- training
    def train_step(self, data):
        if not isinstance(data, dict) or not {"strong", "strong_labels", "weak", "weak_labels", "z"} <= set(data):
            raise DataError("WSGAN.fit needs dict batches with strong, strong_labels, weak, weak_labels and z "
                            "(tfface.methods.wsgan.data.alternating_batches)")
        xs, ys, xw, yw, z = (data[k] for k in ("strong", "strong_labels", "weak", "weak_labels", "z"))
        logs = {}
        for k in range(self.config.n_critic):  # D-phase x n_critic
            logs |= self.step(self.d_phase_networks, lambda k=k: self.d_phase(xs[:, k], ys[:, k], xw[:, k], z[:, k]))
        logs |= self.step(("g", self.weak_extractor_name), lambda: self.g_phase(xw[:, -1], yw[:, -1], z[:, -1]))
        self.track(logs)
        return self.logs()

    @property
    def weak_extractor_name(self) -> str:
        return "f" if self.config.shared_extractor else "f_w"

    @property
    def d_phase_networks(self) -> tuple[str, ...]:
        return ("f", "c") + (("d",) if self.use_adv else ()) + (("e",) if self.use_e else ())

    def d_phase(self, xs, ys, xw, z):
        """``J_D`` (Eq. 9) on one strong and one weak batch; returns ``(this replica's share, logs)``."""
        cfg = self.config
        f_s = self.F_s(xs, training=True)
        fake = self.G([self.F_w(xw, training=True), z], training=True)
        if not cfg.d_phase_grad_through_weak:
            fake = tf.stop_gradient(fake)
        loss, logs = 0.0, {}
        if self.use_adv:
            real = f_s if cfg.strong_extractor_adversarial else tf.stop_gradient(f_s)
            l_ad = self.average(self.D(fake, training=True)[:, 0]) - self.average(self.D(real, training=True)[:, 0])
            loss += l_ad
            logs.update(critic=l_ad, wasserstein=-l_ad)
            if cfg.critic_constraint == "gp":
                gp = self.gradient_penalty(real, fake)
                loss += cfg.gp_weight * gp
                logs["gp"] = gp
        if self.use_cls:
            l_cd = self.average(keras.losses.sparse_categorical_crossentropy(ys, self.C(f_s), from_logits=True))
            loss += cfg.nu_cls * l_cd
            logs["cls_strong"] = l_cd
        if self.use_e:
            l_e = self.average(_l2(self.E(fake, training=True) - z))
            loss += cfg.mu_e * l_e
            logs["e"] = l_e
        return loss, logs

    def g_phase(self, xw, yw, z):
        """``J_G`` (Eq. 8) on one weak batch (D, W_C and E fixed)."""
        cfg = self.config
        fake = self.G([self.F_w(xw, training=True), z], training=True)
        loss, logs = 0.0, {}
        if self.use_adv:
            l_ag = self.average(self.D(fake, training=True)[:, 0])
            loss -= l_ag
            logs["adv"] = -l_ag
        if self.use_cls:
            l_cg = self.average(keras.losses.sparse_categorical_crossentropy(yw, self.C(fake), from_logits=True))
            loss += cfg.lambda_cls * l_cg
            logs["cls_generated"] = l_cg
        if self.use_e:
            loss += cfg.mu_e * self.average(_l2(self.E(fake, training=True) - z))
        return loss, logs

    def gradient_penalty(self, real, fake):
        """WGAN-GP (Gulrajani et al. 2017): ``E[(|grad D(x_hat)| - 1)^2]`` on random interpolates (an option
        beyond the paper). The mixing weights are stateless uniforms seeded by D's step count, so the
        step has no random state to keep in sync across replicas."""
        n = tf.minimum(tf.shape(real)[0], tf.shape(fake)[0])
        real, fake = real[:n], fake[:n]
        step = tf.cast(self.optimizers["d"].iterations, tf.int32)
        alpha = tf.random.stateless_uniform([n, 1], seed=tf.stack([tf.constant(self.config.seed, tf.int32), step]))
        x_hat = alpha * real + (1.0 - alpha) * fake
        with tf.GradientTape() as tape:
            tape.watch(x_hat)
            score = self.D(x_hat, training=True)
        grad = tape.gradient(score, x_hat)
        return self.average(tf.square(_l2(grad) - 1.0))

    # ------------------------------------------------------------------------------ inference
    def strong_features(self, x, batch_size: int = 4096) -> np.ndarray:
        """F_S of strong inputs (gallery features)."""
        return np.asarray(self.F_s.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0))

    def generate(self, x_weak, m: int = 10, seed: int = 0, batch_size: int = 4096) -> np.ndarray:
        """``(Q, m, feature_dim)``: m strong-space counterparts per weak input, ``z ~ N(0, I)`` (seeded)."""
        if int(m) < 1:
            raise ConfigError(f"m: the number of samples per query must be >= 1, got {m}")
        x = np.asarray(x_weak, np.float32)
        f = np.asarray(self.F_w.predict(x, batch_size=batch_size, verbose=0))
        z = np.random.default_rng(seed).normal(size=(len(f), int(m), self.config.z_dim)).astype(np.float32)
        cond = np.repeat(f, m, axis=0)
        g = self.G.predict([cond, z.reshape(-1, self.config.z_dim)], batch_size=batch_size, verbose=0)
        return np.asarray(g, np.float32).reshape(len(f), int(m), -1)

    def generator_model(self, name: str = "wsgan_generator") -> keras.Model:
        """The deployable generator: ``weak_features`` [None, Dw] and ``z`` [None, z_dim] ->
        ``strong_features`` [None, feature_dim] (float32), F_W and G in inference mode."""
        cfg = self.config
        x_in = keras.Input(cfg.input_shape or (cfg.weak_dim,), name=WEAK_FEATURES)
        z_in = keras.Input((cfg.z_dim,), name=NOISE)
        out = keras.layers.Activation("linear", dtype="float32", name=STRONG_FEATURES)(self.G([self.F_w(x_in), z_in]))
        return keras.Model([x_in, z_in], out, name=name)

    def get_config(self):
        return {"name": self.name, "config": dataclasses.asdict(self.config), "num_classes": self.num_classes}
