"""R3AN: cross-model feature translation (Chen et al., "R3 Adversarial Network for Cross Model Face
Recognition", CVPR 2019), its Table-3 ablations and the FC baseline, as one Keras model.

Three parameter sets (Sec. 4, Fig. 3): the generator G (source feature -> 56x56 face, reconstruction
path), the extractor E (face -> target feature, representation path) and the discriminator D. The
regression path is E(G(x)) and has no parameters of its own. Per mini-batch, Algorithm 1 runs four
updates in order, each with the optimizer of the network(s) it updates:

1. D step (lines 5-6): D minimises ``-L_D`` of Eq. 5, i.e. ``BCE(D(I), 1) + BCE(D(G(X)), 0)``;
2. G step (lines 7-8): ``L_G = lambda_rec * L_Rec + lambda_adv * L_Adv`` (Eq. 7), with L_Rec of Eq. 4 and
   L_Adv of Eq. 6 (non-saturating ``BCE(D(G(X)), 1)`` by default, see below);
3. E step (lines 9-10): ``lambda_rep * L_Rep`` (Eq. 8) on real faces;
4. joint step (lines 11-12): ``lambda_reg * L_Reg`` (Eq. 9) back-propagated through E into G; the G part
   of the gradient goes to G's optimizer, the E part to E's.

Choices where the paper is silent or inconsistent (spec ``r3an.md`` section 7; all are
:class:`R3ANConfig` fields):

- ``adv_loss``: the printed Eq. 6 pushes D(G(X)) towards 0 under minimisation (a sign slip, spec A8);
  ``"non_saturating"`` (default, DCGAN) minimises ``-log D(G(X))``, ``"saturating"`` minimises
  ``log(1 - D(G(X)))`` (the minimax form). D always descends on ``BCE(real->1, fake->0)``.
- ``feature_loss``: "L2 loss" read as PyTorch's ``MSELoss`` mean over all elements (``"mse"``, the
  default: with the paper's SGD at lr 0.08 the other reading diverged) or as the squared Euclidean
  distance summed over the feature dimension and averaged over the batch (``"sqdist"``, the spec's
  suggestion, ``2 - 2 cos`` for unit vectors; the ``cpu`` preset's Adam trains with it). L_Rec is the
  mean squared pixel error.
- X and Y are L2-normalised (spec A3/A4); E's output is raw in training and L2-normalised by the
  exported :meth:`R3AN.translator`.
- Weight decay is PyTorch-style coupled L2 (``wd * w`` added to every gradient, spec 3.5), not Keras'
  decoupled ``weight_decay``.
- The learning rate is piecewise constant, ``lr * decay**k`` after the k-th boundary (fractions of the
  total number of batches; the paper: 0.08 divided by 10 at 60k/100k/140k of 200k iterations). Each
  optimizer's schedule is counted in *batches*, not in its own applications (G's and E's optimizers
  apply twice per batch when both their own step and the joint step run).
- ``optimizer="sgd"`` (the paper: momentum 0.9) or ``"adam"`` (a flagged deviation for short CPU
  budgets); ``d_optimizer="adam"`` switches only D to Adam(2e-4, beta1=0.5) (spec A10).
- The "three stages" of Sec. 4.4 are read as the three kinds of sub-step inside each iteration, which
  is what Algorithm 1 writes out (spec A9, reading 1); sequential pre-training phases are not offered.

``variant`` selects the Table-3 architecture: which of the (Adv, Rec, Rep, Reg) losses are on
(:data:`VARIANTS`), or ``"fc"``: the naive MLP translator with about the parameters of G+E, trained
on L_Reg alone with the same optimizer and schedule. Steps whose losses are off are skipped (a variant
without Reg still deploys as E(G(X)), with G and E trained independently).

Under ``tf.distribute.MirroredStrategy`` every loss is a per-example loss summed and divided by the
global batch (``tf.nn.compute_average_loss``), gradients are summed over replicas by the optimizers,
and the logged losses are multiplied by the number of replicas so N devices log what one logs.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from tfface.errors import ConfigError, DataError
from tfface.methods.adversarial import AdversarialModel, discriminator_loss, generator_loss
from tfface.methods.r3an.config import R3ANConfig
from tfface.methods.r3an.nets import (
    discriminator,
    extractor,
    fc_translator,
    generator,
    matched_hidden,
    trainable_parameters,
)
from tfface.signatures import SOURCE_FEATURES, TARGET_FEATURES


@keras.saving.register_keras_serializable(package="tfface")
class R3AN(AdversarialModel):
    """The R3AN trainer (Algorithm 1); ``call(source_features)`` is the deployed transform E(G(x)).

    Fit it on ``((source_features, faces), target_features)`` batches (faces: 56x56x3 in [-1, 1]);
    export :meth:`translator`, never the trainer. ``compile`` takes one optimizer per network
    (:func:`tfface.training.r3an.r3an_optimizers` builds them from the config with the piecewise
    schedule counted in batches).

    Example:
      >>> import numpy as np
      >>> from tfface.methods.r3an import R3AN, R3ANConfig
      >>> from tfface.training.r3an import r3an_optimizers
      >>> cfg = R3ANConfig(variant="r3an", source_dim=8, target_dim=8, width=0.125, expansion=2)
      >>> model = R3AN(cfg)
      >>> model.compile(**r3an_optimizers(model, total_steps=2))
      >>> rng = np.random.default_rng(0)
      >>> x, y = rng.normal(size=(4, 8)).astype("float32"), rng.normal(size=(4, 8)).astype("float32")
      >>> faces = rng.uniform(-1, 1, (4, 56, 56, 3)).astype("float32")
      >>> h = model.fit((x, faces), y, batch_size=2, epochs=1, verbose=0)
      >>> sorted(h.history)
      ['loss_adv', 'loss_d', 'loss_rec', 'loss_reg', 'loss_rep']
      >>> tuple(model.translator()(x).shape)
      (4, 8)
    """

    def __init__(self, config: R3ANConfig | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = R3ANConfig(**{k: tuple(v) if k == "lr_boundaries" else v for k, v in config.items()})
        self.config = cfg = config or R3ANConfig()
        self.coupled_weight_decay = cfg.weight_decay  # PyTorch-style L2 (spec 3.5)
        self.use_adv, self.use_rec, self.use_rep, self.use_reg = cfg.flags
        if cfg.variant == "fc":
            hidden = cfg.fc_hidden or matched_hidden(
                trainable_parameters(generator(cfg.source_dim, cfg.width), extractor(cfg.target_dim, cfg.expansion,
                                                                                     cfg.width)),
                cfg.source_dim, cfg.target_dim)
            self.mlp = fc_translator(cfg.source_dim, cfg.target_dim, hidden=hidden)
            self.G = self.E = self.D = None
        else:
            self.mlp = None
            self.G = generator(cfg.source_dim, cfg.width, seed=cfg.seed)
            self.E = extractor(cfg.target_dim, cfg.expansion, cfg.width)
            self.D = discriminator(seed=cfg.seed) if self.use_adv else None
        self.init_trackers(self.loss_names, prefix="loss_")
        self.built = True

    @property
    def loss_names(self) -> list[str]:
        if self.mlp is not None:
            return ["reg"]
        names = (["d", "adv"] if self.use_adv else []) + (["rec"] if self.use_rec else [])
        return names + (["rep"] if self.use_rep else []) + (["reg"] if self.use_reg else [])

    def call(self, inputs, training=False):
        x = inputs[0] if isinstance(inputs, list | tuple) else inputs
        if isinstance(x, dict):
            x = x["source_features"]
        if self.mlp is not None:
            return self.mlp(x, training=training)
        return self.E(self.G(x, training=training), training=training)

    def translator(self, normalize: bool = True, name: str = "translator") -> keras.Model:
        """The deployable translator: ``source_features`` [None, Ds] -> ``target_features`` [None, Dt], float32.

        G normalises its input (``UnitNormalization``); ``normalize`` L2-normalises the output so the
        translated gallery is searched by cosine like the target model's own features.
        """
        x_in = keras.Input((self.config.source_dim,), name=SOURCE_FEATURES)
        y = self.mlp(x_in) if self.mlp is not None else self.E(self.G(x_in))
        layer = keras.layers.UnitNormalization(dtype="float32", name=TARGET_FEATURES) if normalize else \
            keras.layers.Activation("linear", dtype="float32", name=TARGET_FEATURES)
        return keras.Model(x_in, layer(y), name=name)

    # ------------------------------------------------------------------------------- training
    def applies_per_batch(self) -> dict[str, int]:
        """How often each network's optimizer applies per batch (G and E twice when their own step and
        the joint step both run), so a schedule counted in batches can scale its boundaries."""
        if self.mlp is not None:
            return {"g": 1}
        out = {"g": max(1, int(self.use_rec or self.use_adv) + int(self.use_reg)),
               "e": max(1, int(self.use_rep) + int(self.use_reg))}
        if self.use_adv:
            out["d"] = 1
        return out

    def compile(self, g_optimizer=None, e_optimizer=None, d_optimizer=None, **kwargs):
        """One optimizer per network (Algorithm 1): ``g_optimizer`` (the FC baseline's MLP uses it),
        ``e_optimizer``, ``d_optimizer`` (only with the adversarial loss); each is built on its network now."""
        needed = self.applies_per_batch()
        given = {"g": g_optimizer, "e": e_optimizer, "d": d_optimizer}
        missing = [f"{n}_optimizer" for n in needed if given[n] is None]
        if missing:
            raise ConfigError(f"R3AN.compile: {self.config.variant} needs {', '.join(missing)} "
                              f"(see tfface.training.r3an.r3an_optimizers)")
        nets = {"g": self.mlp if self.mlp is not None else self.G, "e": self.E, "d": self.D}
        self.set_optimizers({n: (given[n], nets[n]) for n in needed})
        super().compile(optimizer=None, **kwargs)

    @property
    def g_optimizer(self):
        return self.optimizers.get("g")

    @property
    def e_optimizer(self):
        return self.optimizers.get("e")

    @property
    def d_optimizer(self):
        return self.optimizers.get("d")

    def recalibrate_batch_norm(self, dataset, batches: int = 50) -> int:
        """Re-estimate E's BatchNorm statistics on the deployed path E(G(x)); returns the batches used.

        In Algorithm 1, E runs in training mode on real faces (E step) and on G's faces (joint step), so
        its moving statistics average two input distributions, while the deployed translator only ever
        feeds it G's faces. When reconstructions are far from real faces (small budgets) that mismatch
        costs accuracy at inference. This pass replaces the moving mean and variance by the exact
        average over ``batches`` batches of ``G(x)`` (G in inference mode); no weight changes. Run
        eagerly, after training (``train_translator`` does it when ``bn_recalibration`` is on).
        """
        if self.E is None:
            return 0
        layers = [lay for lay in self.E._flatten_layers() if isinstance(lay, keras.layers.BatchNormalization)]
        saved = [lay.momentum for lay in layers]
        k = 0
        try:
            for (x, _faces), _y in dataset.take(batches):
                for lay in layers:
                    lay.momentum = k / (k + 1.0)  # running mean of the per-batch statistics
                self.E(self.G(tf.math.l2_normalize(tf.cast(x, tf.float32), -1), training=False), training=True)
                k += 1
        finally:
            for lay, m in zip(layers, saved, strict=True):
                lay.momentum = m
        return k

    def _feature_loss(self, y, y_hat):
        d = tf.square(y - tf.cast(y_hat, tf.float32))
        return tf.reduce_sum(d, -1) if self.config.feature_loss == "sqdist" else tf.reduce_mean(d, -1)

    @staticmethod
    def _pixel_loss(img, fake):
        return tf.reduce_mean(tf.square(img - tf.cast(fake, tf.float32)), axis=[1, 2, 3])

    def train_step(self, data):
        """Algorithm 1, one mini-batch: D step, G step, E step, joint G+E step (skipped when off)."""
        inputs, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if not isinstance(inputs, list | tuple) or len(inputs) != 2 or y is None:
            raise DataError("R3AN.fit needs ((source_features, faces), target_features) batches")
        x, img = inputs
        x = tf.math.l2_normalize(tf.cast(x, tf.float32), axis=-1)
        y = tf.math.l2_normalize(tf.cast(y, tf.float32), axis=-1)
        img = tf.cast(img, tf.float32)
        losses = {}
        if self.mlp is not None:
            losses.update(self.fc_step(x, y))
        else:
            if self.use_adv:
                losses.update(self.d_step(x, img))
            if self.use_rec or self.use_adv:
                losses.update(self.g_step(x, img))
            if self.use_rep:
                losses.update(self.e_step(img, y))
            if self.use_reg:
                losses.update(self.joint_step(x, y))
        self.track(losses)
        return self.logs()

    def fc_step(self, x, y) -> dict:
        """The FC baseline: one step on L_Reg (Eq. 9) through the MLP."""
        def loss():
            lreg = self.average(self._feature_loss(y, self.mlp(x, training=True)))
            return lreg, {"reg": lreg}
        return self.step("g", loss)

    def d_step(self, x, img) -> dict:
        """Algorithm 1 lines 5-6: D minimises ``BCE(D(I), 1) + BCE(D(G(X)), 0)``, i.e. maximises Eq. 5."""
        fake = tf.stop_gradient(self.G(x, training=True))

        def loss():
            ld = self.average(discriminator_loss(self.D(img, training=True), self.D(fake, training=True)))
            return ld, {"d": ld}
        return self.step("d", loss)

    def g_step(self, x, img) -> dict:
        """Algorithm 1 lines 7-8: G minimises ``L_G = lambda_rec L_Rec + lambda_adv L_Adv`` (Eqs. 4, 6, 7)."""
        cfg = self.config

        def loss():
            logs = {}
            fake = self.G(x, training=True)
            lg = tf.constant(0.0)
            if self.use_rec:
                logs["rec"] = self.average(self._pixel_loss(img, fake))
                lg += cfg.lambda_rec * logs["rec"]
            if self.use_adv:  # non-saturating -log D(G(X)) or saturating log(1 - D(G(X)))
                logs["adv"] = self.average(generator_loss(self.D(fake, training=True), cfg.adv_loss))
                lg += cfg.lambda_adv * logs["adv"]
            return lg, logs
        return self.step("g", loss)

    def e_step(self, img, y) -> dict:
        """Algorithm 1 lines 9-10: E minimises ``lambda_rep L_Rep`` (Eq. 8) on real faces."""
        def loss():
            lrep = self.average(self._feature_loss(y, self.E(img, training=True)))
            return lrep, {"rep": lrep}
        return self.step("e", loss, scale=self.config.lambda_rep)

    def joint_step(self, x, y) -> dict:
        """Algorithm 1 lines 11-12: G and E minimise ``lambda_reg L_Reg`` (Eq. 9) through E(G(X))."""
        def loss():
            lreg = self.average(self._feature_loss(y, self.E(self.G(x, training=True), training=True)))
            return lreg, {"reg": lreg}
        return self.step(("g", "e"), loss, scale=self.config.lambda_reg)

    def test_step(self, data):
        inputs, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        x = inputs[0] if isinstance(inputs, list | tuple) else inputs
        x = tf.math.l2_normalize(tf.cast(x, tf.float32), axis=-1)
        y = tf.math.l2_normalize(tf.cast(y, tf.float32), axis=-1)
        self.track({"reg": self.average(self._feature_loss(y, self(x, training=False)))})
        return self.logs()

    def get_config(self):
        return {"name": self.name, "config": dataclasses.asdict(self.config)}
