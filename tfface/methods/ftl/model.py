"""FTL as Keras models: the shared networks and one thin model per phase of Algorithm 1.

:class:`FTLNetworks` holds Enc, Dec, R and FC. Each phase is its own :class:`~tfface.methods.adversarial.
AdversarialModel` over those same networks, with its own optimizers (one Adam per network it trains,
kept across alternations), and "freezing" is the choice of the networks a step updates, never a
``trainable`` flag flipped after a trace:

- :class:`FTLJoint`, Eq. 4, ``L = alpha_sfmx L_sfmx + alpha_recon L_recon + alpha_reg L_reg`` on plain
  batches ``(x, y)``: pretraining and the baselines' continuation train Enc, Dec, R and FC; Stage 2
  ("compact feature learning") trains Enc, Dec and R with FC fixed;
- :class:`FTLStage1`, "decision boundary reshape": Enc and Dec fixed (Enc in inference mode, so its
  BatchNorm statistics do not move either), R and FC trained with Eq. 2 + 3 by three sequential updates
  per iteration, as Algorithm 1's box::

      g_r = Enc(x_r); g_u = Enc(x_u)                       # 1st batch: hard regular samples (h)
      train(g_r, y_r); train(g_u, y_u)                     # 2nd batch: UR samples, class-balanced
      g~ = C[y_u] + (g_r - C[y_r]) Q Q^T                   # Eq. 7
      train(g~, y_u)                                       # 3rd batch: the transferred features

  ``transfer="gauss"`` replaces g~ by ``C[y_u] + eps L^T`` (``L L^T = V / n_reg``: the spec's B4) and
  ``"none"`` drops the third update (B3). ``C``, ``Q`` and ``L`` are non-trainable variables assigned
  by :meth:`FTLStage1.set_stats` after each ``UpdateStats``; Q is zero-padded to [D, D] so the traced
  step keeps its shape when K changes.

Example:
  >>> import numpy as np
  >>> from tfface.methods.ftl import FTLConfig, FTLNetworks
  >>> nets = FTLNetworks(FTLConfig(input_shape=(16, 16, 1), encoder_layers=((8, 2), (8, 2)), feature_dim=8,
  ...                              decoder_channels=(8, 8, 8)), num_classes=5)
  >>> g, f = nets.features(np.zeros((3, 16, 16, 1), np.float32))
  >>> g.shape, f.shape, nets(np.zeros((3, 16, 16, 1), np.float32)).shape
  ((3, 8), (3, 8), TensorShape([3, 5]))
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tfface.errors import ConfigError, DataError
from tfface.methods.adversarial import AdversarialModel
from tfface.methods.ftl.config import TRANSFERS, FTLConfig
from tfface.methods.ftl.losses import metric_l2, reconstruction_loss, softmax_loss
from tfface.methods.ftl.nets import classifier, decoder, encoder, filtering_network
from tfface.signatures import EMBEDDINGS, IMAGES

__all__ = ["FTLJoint", "FTLNetworks", "FTLStage1"]

NETWORKS = ("enc", "dec", "r", "fc")


class FTLNetworks(keras.Model):
    """Enc, Dec (``None`` without ``use_decoder``), R and FC of one FTL run; ``call(x)`` -> logits."""

    def __init__(self, config: FTLConfig | None = None, num_classes: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.config = cfg = config or FTLConfig()
        if int(num_classes) < 2:
            raise ConfigError(f"FTL: num_classes must be >= 2, got {num_classes}")
        self.num_classes = int(num_classes)
        self.enc = encoder(cfg.input_shape, cfg.encoder_layers, cfg.feature_dim)
        self.dec = decoder(cfg.input_shape, cfg.feature_dim, cfg.decoder_channels) if cfg.use_decoder else None
        self.r = filtering_network(cfg.feature_dim, cfg.filter_spatial, cfg.filter_channels)
        self.fc = classifier(cfg.feature_dim, self.num_classes)
        self.built = True

    def get_config(self):
        return {"name": self.name, "config": dataclasses.asdict(self.config), "num_classes": self.num_classes}

    @classmethod
    def from_config(cls, config):
        cfg = dict(config["config"])
        for key in ("input_shape", "filter_channels", "decoder_channels"):
            cfg[key] = tuple(cfg[key])
        cfg["encoder_layers"] = tuple(tuple(x) for x in cfg["encoder_layers"])
        return cls(FTLConfig(**cfg), config["num_classes"], name=config.get("name"))

    def network(self, name: str) -> keras.Model | None:
        return {"enc": self.enc, "dec": self.dec, "r": self.r, "fc": self.fc}[name]

    def call(self, x, training=False):
        return self.fc(self.r(self.enc(x, training=training), training=training))

    def features(self, x, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """``(g, f)`` of images in inference mode."""
        x = np.asarray(x, np.float32)
        g = np.asarray(self.enc.predict(x, batch_size=batch_size, verbose=0))
        return g, np.asarray(self.r.predict(g, batch_size=batch_size, verbose=0))

    def class_weights(self) -> np.ndarray:
        """FC's ``W`` as [N_c, D] (one row ``w_j`` per class)."""
        return np.asarray(self.fc.get_weights()[0]).T

    def embedding_model(self, feature: str = "f", name: str = "ftl_embedder") -> keras.Model:
        """The deployable embedder: ``images`` [None, H, W, C] in [0, 1] -> ``embeddings`` (``f`` = R(Enc(x)),
        or ``g`` = Enc(x)), float32, inference mode."""
        if feature not in ("f", "g"):
            raise ConfigError(f"feature: {feature!r} is not one of ('f', 'g')")
        inp = keras.Input(self.config.input_shape, name=IMAGES)
        g = self.enc(inp)
        out = self.r(g) if feature == "f" else g
        out = keras.layers.Activation("linear", dtype="float32", name=EMBEDDINGS)(out)
        return keras.Model(inp, out, name=name)


class _Phase(AdversarialModel):
    """A phase of FTL over shared :class:`FTLNetworks`: one Adam per trained network, built at compile."""

    trained: tuple[str, ...] = ()

    def __init__(self, nets: FTLNetworks, learning_rate: float, **kwargs):
        super().__init__(**kwargs)
        self.nets = nets
        self.config = nets.config
        self.learning_rate = float(learning_rate)
        missing = [n for n in self.trained if nets.network(n) is None]
        if missing:
            raise ConfigError(f"{type(self).__name__}: network {missing[0]!r} is off in this config (use_decoder)")
        self.built = True

    def call(self, x, training=False):
        return self.nets(x, training=training)

    def compile(self, **kwargs):
        self.set_optimizers({n: (keras.optimizers.Adam(self.learning_rate, name=f"{n}_adam"), self.nets.network(n))
                             for n in self.trained})
        super().compile(optimizer=None, **kwargs)

    def eq2_3(self, f_logits, y, alpha_reg: float) -> tuple[tf.Tensor, dict]:
        """``alpha_sfmx L_sfmx + alpha_reg L_reg`` (this replica's share) and the logs."""
        cfg = self.config
        l_sfmx = self.average(softmax_loss(y, f_logits))
        l_reg = self.average(metric_l2(f_logits, cfg.mreg_reduction))
        return cfg.alpha_sfmx * l_sfmx + alpha_reg * l_reg, {"sfmx": l_sfmx, "reg": l_reg}


class FTLJoint(_Phase):
    """Eq. 4 on ``(x, y)`` batches; ``trained`` networks step (``FTLJoint.PRETRAIN`` or ``FTLJoint.STAGE2``).

    ``alpha_reg``: the m-L2 weight of this phase (``None``: the config's; 0 for the plain-softmax rows)."""

    PRETRAIN = ("enc", "dec", "r", "fc")
    STAGE2 = ("enc", "dec", "r")

    def __init__(self, nets: FTLNetworks, trained=PRETRAIN, learning_rate: float | None = None,
                 alpha_reg: float | None = None, **kwargs):
        use_dec = nets.config.use_decoder
        self.trained = tuple(n for n in trained if use_dec or n != "dec")
        unknown = set(self.trained) - set(NETWORKS)
        if unknown:
            raise ConfigError(f"FTLJoint: unknown network {sorted(unknown)[0]!r}; known: {', '.join(NETWORKS)}")
        lr = nets.config.pretrain_learning_rate if learning_rate is None else learning_rate
        super().__init__(nets, lr, **kwargs)
        self.alpha_reg = nets.config.alpha_reg if alpha_reg is None else float(alpha_reg)
        self.init_trackers(["total", "sfmx", "reg", "recon"], prefix="loss_")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def extra_metrics(self):
        return [self.accuracy]

    def train_step(self, data):
        if not isinstance(data, tuple | list) or len(data) != 2:
            raise DataError("FTLJoint.fit needs (images, labels) batches")
        x, y = data
        out = {}

        def loss_fn():
            cfg = self.config
            g = self.nets.enc(x, training=True)
            logits = self.nets.fc(self.nets.r(g, training=True), training=True)
            loss, logs = self.eq2_3(logits, y, self.alpha_reg)
            if self.nets.dec is not None and cfg.alpha_recon:
                l_rec = self.average(reconstruction_loss(x, self.nets.dec(g, training=True), cfg.recon_reduction))
                loss += cfg.alpha_recon * l_rec
                logs["recon"] = l_rec
            out["logits"] = logits
            return loss, {**logs, "total": loss}

        logs = self.step(self.trained, loss_fn)
        self.track(logs)
        self.accuracy.update_state(y, out["logits"])
        return self.logs()


class FTLStage1(_Phase):
    """Stage 1 of Algorithm 1 (module docstring) on dict batches ``x_r, y_r, x_u, y_u`` (+ ``eps`` for gauss)."""

    trained = ("r", "fc")

    def __init__(self, nets: FTLNetworks, transfer: str = "pca", learning_rate: float | None = None, **kwargs):
        if transfer not in TRANSFERS:
            raise ConfigError(f"transfer: {transfer!r} is not one of {TRANSFERS}")
        super().__init__(nets, nets.config.stage_learning_rate if learning_rate is None else learning_rate, **kwargs)
        self.transfer = transfer
        d, n = nets.config.feature_dim, nets.num_classes
        self.centres = self.add_weight(shape=(n, d), initializer="zeros", trainable=False, name="centres")
        self.basis = self.add_weight(shape=(d, d), initializer="zeros", trainable=False, name="basis")
        self.noise_factor = self.add_weight(shape=(d, d), initializer="zeros", trainable=False, name="noise_factor")
        self.init_trackers(["regular", "ur"] + ([] if transfer == "none" else ["transferred"]) + ["reg"],
                           prefix="loss_")

    def set_stats(self, stats) -> None:
        """Assign ``C``, the zero-padded ``Q`` and (gauss) ``L = chol(V / n_reg)`` from an :class:`FTLStats`."""
        self.centres.assign(np.asarray(stats.centres, np.float32))
        self.basis.assign(stats.padded_basis())
        if self.transfer == "gauss":
            cov = np.asarray(stats.covariance, np.float64) / max(stats.regular_samples, 1)
            vals, vecs = np.linalg.eigh((cov + cov.T) / 2)  # a square root that survives a singular V
            self.noise_factor.assign((vecs * np.sqrt(np.clip(vals, 0, None))).astype(np.float32))

    def transferred(self, g_r, y_r, y_u, eps=None) -> tf.Tensor:
        """Eq. 7 (``pca``) or ``C[y_u] + eps L^T`` (``gauss``), no gradient."""
        c_u = tf.gather(self.centres, y_u)
        if self.transfer == "gauss":
            return c_u + tf.matmul(eps, self.noise_factor, transpose_b=True)
        dev = g_r - tf.gather(self.centres, y_r)
        return tf.stop_gradient(c_u + tf.matmul(tf.matmul(dev, self.basis), self.basis, transpose_b=True))

    def train_step(self, data):
        need = {"x_r", "y_r", "x_u", "y_u"} | ({"eps"} if self.transfer == "gauss" else set())
        if not isinstance(data, dict) or not need <= set(data):
            raise DataError(f"FTLStage1.fit needs dict batches with {sorted(need)} "
                            "(tfface.methods.ftl.data.stage1_batches)")
        a_reg = self.config.alpha_reg
        g_r = tf.stop_gradient(self.nets.enc(data["x_r"], training=False))
        g_u = tf.stop_gradient(self.nets.enc(data["x_u"], training=False))

        def train(g, y, name):
            def loss_fn():
                loss, logs = self.eq2_3(self.nets.fc(self.nets.r(g, training=True)), y, a_reg)
                return loss, {name: logs["sfmx"], "reg": logs["reg"]}
            return self.step(self.trained, loss_fn)

        logs = train(g_r, data["y_r"], "regular")  # 1st batch: hard regular samples
        logs |= train(g_u, data["y_u"], "ur")  # 2nd batch: UR samples
        if self.transfer != "none":  # 3rd batch: transferred UR features
            logs |= train(self.transferred(g_r, data["y_r"], data["y_u"], data.get("eps")), data["y_u"], "transferred")
        self.track(logs)
        return self.logs()
