"""GANFaces as one Keras model whose ``train_step`` is the paper's simultaneous update (Sec. 3, Eqs. 1-10;
the order is the spec's section 3.4, from the authors' code)::

    x_hat = G(x)                       # dropout on
    x_til = G'(x_hat)                  # forward cycle only
    L_G   = |x_hat - D_R(x_hat)|                       L_DR = |y - D_R(y)| - k_R L_G      (Eqs. 2, 4)
    L_G'  = |x_til - D_S(x_til)|                       L_DS = |x - D_S(x)| - k_S L_G'     (Eqs. 3, 5)
    L_cyc = |x_til - x|                                                                  (Eq. 1)
    L_DP  = |s - G'(r)| - k_P L_cyc                    # G' as pair-matching discriminator (Eq. 6)
    c     <- beta c + (1 - beta) C(aug(x_hat))         # centroids first, no gradient
    L_C   = magnet loss of C(aug(x_hat)) against c     # (Eq. 7)
    L_id  = |x - x_hat| on the rendered face pixels
    theta_G      -= Adam(d/dG  [L_G  + l_cyc L_cyc + l_C L_C + l_id L_id])                (Eq. 8)
    theta_G'     -= Adam(d/dG' [L_G' + l_cyc L_cyc + l_DP L_DP])                          (Eq. 9)
    theta_DR, DS -= Adam(d/dD  [L_DR + L_DS])                                             (Eq. 10)
    k_R <- clip(k_R + l_k (gamma |y - D_R(y)| - L_G), 0, 1); likewise k_S, and k_P with |s - G'(r)|, L_cyc
    EMA(G) <- d EMA(G) + (1 - d) G,  d = min(ema_decay, (1 + t) / (10 + t))

All four gradients come from the same forward pass and are applied together (the paper trains the
networks "simultaneously"), each by its network's own Adam (D_R and D_S have separate optimizers; Adam
is per parameter, so this equals one Adam over both). ``|.|`` is the mean absolute error (spec A6).

Distributed training: per-example losses are averaged over the GLOBAL batch (:meth:`MethodModel.average`);
L_C needs the whole batch (its sigma and the centroid update), so C's embeddings and the identity labels
are all-gathered, L_C is the same on every replica and enters as ``L_C / N``. The BEGAN balances use
all-reduced global losses, so k_R, k_S, k_P, the centroids and the EMA weights (non-trainable,
``only_first_replica`` variables) are updated identically on every replica. C's crops and flips come
from the input pipeline (``crop``), so they are the same on one device and on N. Dropout draws are
per replica: a parity test disables it.

Example:
  >>> import numpy as np
  >>> from tfface.methods.ganfaces import GANFaces, GANFacesConfig
  >>> model = GANFaces(GANFacesConfig(variant="no_c", image_size=16, ngf=4, d_hidden=4, d_bottleneck=8), 10)
  >>> model.compile()
  >>> model.generate(np.zeros((2, 16, 16, 3), np.float32)).shape
  (2, 16, 16, 3)
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tfface.errors import ConfigError, DataError
from tfface.methods.adversarial import AdversarialModel
from tfface.methods.base import num_replicas
from tfface.methods.ganfaces.config import GANFacesConfig
from tfface.methods.ganfaces.nets import began_discriminator, refiner

__all__ = ["NETWORKS", "REFINED_IMAGES", "SYNTHETIC_IMAGES", "GANFaces", "centroid_update", "l1", "magnet_loss"]

#: The optimizers' names: G, G', D_R, D_S.
NETWORKS = ("g", "g_prime", "d_r", "d_s")
#: The exported generator's input and output names.
SYNTHETIC_IMAGES = "synthetic_images"
REFINED_IMAGES = "refined_images"
_STATE = dict(trainable=False, aggregation="only_first_replica")


def l1(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Per-example mean absolute error ``[B]`` (the spec's ``|.|_1``, A6)."""
    return tf.reduce_mean(tf.abs(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)), axis=[1, 2, 3])


def centroid_update(centroids: tf.Tensor, ids: tf.Tensor, f: tf.Tensor, beta: float = 0.95) -> tf.Tensor:
    """``c_j <- c_j - (1 - beta) (c_j - f)`` for each sample of identity j (Sec. 3.3 with the momentum read
    as in the authors' code, spec A3); duplicates in a batch accumulate (TF's ``scatter_sub``)."""
    ids = tf.cast(ids, tf.int32)
    delta = (1.0 - beta) * (tf.gather(centroids, ids) - f)
    return tf.tensor_scatter_nd_sub(centroids, ids[:, None], delta)


def magnet_loss(f: tf.Tensor, ids: tf.Tensor, centroids: tf.Tensor, eta: float = 1.0,
                sigma_is_variance: bool = False) -> tf.Tensor:
    """Eq. 7, the simplified magnet loss over moving centroids (batch mean; spec A1, A2, A4)::

        L_C = mean_m relu( -log[ exp(-|f_m - c_{i_m}|^2 / 2s - eta) / sum_{j != i_m} exp(-|f_m - c_j|^2 / 2s) ] )

    with ``sigma = sum_m |f_m - c_{i_m}|^2 / (M - 1)`` and ``s = sigma^2`` (the paper's printed form) or
    ``s = sigma`` (``sigma_is_variance``: magnet loss' variance). The denominator runs over every identity
    but the sample's own (never-updated zero centroids included). Computed in the log domain (a
    ``logsumexp``), which drops the authors' ``1e-8`` guards. sigma is not stop-gradiented."""
    f = tf.cast(f, tf.float32)
    ids = tf.cast(ids, tf.int32)
    d = tf.maximum(tf.reduce_sum(f * f, 1, keepdims=True) - 2.0 * tf.matmul(f, centroids, transpose_b=True)
                   + tf.reduce_sum(centroids * centroids, 1)[None], 0.0)  # [M, J]
    own = tf.gather(d, ids, axis=1, batch_dims=1)  # [M]
    m = tf.cast(tf.shape(f)[0], tf.float32)
    sigma = tf.reduce_sum(own) / tf.maximum(m - 1.0, 1.0)
    spread = sigma if sigma_is_variance else tf.square(sigma)
    scale = 1.0 / (2.0 * tf.maximum(spread, 1e-12))
    others = tf.where(tf.one_hot(ids, tf.shape(centroids)[0]) > 0, -np.inf, -d * scale)
    log_num = -own * scale - eta
    return tf.reduce_mean(tf.nn.relu(tf.reduce_logsumexp(others, axis=1) - log_num))


def _gather(x: tf.Tensor) -> tf.Tensor:
    """The global batch of ``x`` (replica order = batch order); ``x`` itself on one device."""
    ctx = tf.distribute.get_replica_context()
    return ctx.all_gather(x, axis=0) if ctx is not None and ctx.num_replicas_in_sync > 1 else x


def _global(share: tf.Tensor) -> tf.Tensor:
    """A global mean from this replica's share of it (sum over replicas)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, share)
    return share


class _Untracked:
    """A plain holder, so the generation copy of G is not one of the model's layers or weights."""

    net = None


class GANFaces(AdversarialModel):
    """G, G' (= D_P), D_R, D_S and the frozen embedder C of one GANFaces run; see the module docstring.

    ``num_identities``: identity labels of the synthetic domain (0..n-1), one centroid each;
    ``embedder``: C, a Keras model ``[B, c, c, 3] -> [B, d]`` (``c`` = ``config.crop_size``), frozen
    (``trainable = False``, called in inference mode). Variant ``no_c`` needs none."""

    def __init__(self, config: GANFacesConfig | dict | None = None, num_identities: int = 2, embedder=None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = GANFacesConfig(**{k: tuple(v) if k == "lr_halvings" else v for k, v in config.items()})
        self.config = cfg = config or GANFacesConfig()
        self.use = cfg.flags
        self.num_identities = int(num_identities)
        if self.num_identities < (2 if self.use.identity else 1):
            raise ConfigError(f"GANFaces: num_identities must be >= 2 (L_C contrasts identities), got {num_identities}")
        s = cfg.image_size
        self.G = refiner(s, cfg.ngf, cfg.res_blocks, skips=True, dropout=cfg.dropout,
                         norm_everywhere=cfg.norm_everywhere, seed=cfg.seed, name="generator")
        self.G_prime = refiner(s, cfg.ngf, cfg.res_blocks, skips=False, dropout=0.0,
                               norm_everywhere=cfg.norm_everywhere, name="inverse_generator")
        r = cfg.discriminator_repeat
        self.D_R = began_discriminator(s, cfg.d_hidden, cfg.d_bottleneck, r, name="real_discriminator")
        self.D_S = began_discriminator(s, cfg.d_hidden, cfg.d_bottleneck, r, name="synthetic_discriminator")
        self.C = self._frozen(embedder) if embedder is not None else None
        if self.use.identity and self.C is None:
            raise ConfigError(f"GANFaces: variant {cfg.variant!r} trains L_C and needs a frozen embedder C "
                              "(embedder=...); the no_c variant runs without one")
        self.k_r = self.add_weight(shape=(), initializer="zeros", name="k_r", **_STATE)
        self.k_s = self.add_weight(shape=(), initializer="zeros", name="k_s", **_STATE)
        self.k_p = self.add_weight(shape=(), initializer="zeros", name="k_p", **_STATE)
        self.centroids = None
        if self.use.identity:
            dim = int(self.C.outputs[0].shape[-1])
            self.centroids = self.add_weight(shape=(self.num_identities, dim), initializer="zeros",
                                             name="centroids", **_STATE)
        self.ema_weights = [self.add_weight(shape=tuple(v.shape), initializer="zeros", name=f"ema_{i}", **_STATE)
                            for i, v in enumerate(self.G.trainable_variables)]
        for shadow, v in zip(self.ema_weights, self.G.trainable_variables, strict=True):
            shadow.assign(v)
        self._generation = _Untracked()
        self.init_trackers(self.loss_names)
        self.built = True

    def _frozen(self, embedder):
        cfg = self.config
        inputs = getattr(embedder, "inputs", None)
        if not isinstance(embedder, keras.Model) or not inputs:
            raise ConfigError("embedder: C must be a built Keras model with one image input")
        shape = tuple(inputs[0].shape[1:])
        want = (cfg.crop_size, cfg.crop_size, 3)
        if shape != want:
            raise ConfigError(f"embedder: C takes {'x'.join(map(str, shape))} images, but G(x) of "
                              f"{cfg.image_size}x{cfg.image_size} is cropped to {'x'.join(map(str, want))} for it "
                              f"(model.c_input_size)")
        embedder.trainable = False
        return embedder

    @property
    def loss_names(self) -> list[str]:
        names = ["l_g", "l_g_prime", "l_dr", "l_ds", "dr_real", "ds_real", "l_cyc", "l_id", "k_r", "k_s",
                 "m_r", "m_s"]
        names += ["l_dp", "dp_real", "k_p", "m_p"] if self.use.pair_matching else []
        return names + (["l_c"] if self.use.identity else [])

    def call(self, inputs, training=False):
        """Synthetic renders -> G(x) (the training G, not the EMA copy)."""
        return self.G(inputs, training=training)

    # -------------------------------------------------------------------------------- compile
    def learning_rate(self, total_steps: int | None = None):
        """Adam's rate: constant, or with ``total_steps`` halved at ``lr_halvings`` of the run, floored at
        ``lr_floor`` (the paper's schedule, spec A9 / A23)."""
        cfg = self.config
        if not total_steps:
            return cfg.learning_rate
        steps = [max(1, int(round(f * total_steps))) for f in cfg.lr_halvings]
        bounds = sorted(set(steps))
        values = [cfg.learning_rate] + [max(cfg.learning_rate * 0.5 ** sum(s <= b for s in steps), cfg.lr_floor)
                                        for b in bounds]
        return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values)

    def default_optimizers(self, total_steps: int | None = None) -> dict:
        cfg = self.config
        lr = self.learning_rate(total_steps)
        return {n: keras.optimizers.Adam(lr, beta_1=cfg.adam_beta_1, beta_2=cfg.adam_beta_2,
                                         epsilon=cfg.adam_epsilon, name=f"{n}_optimizer") for n in NETWORKS}

    def compile(self, optimizers: dict | None = None, total_steps: int | None = None, **kwargs):
        """``optimizers``: ``{g, g_prime, d_r, d_s: optimizer}``, any left out taking Adam with the
        paper's schedule over ``total_steps`` (constant without); each is built on its network now."""
        opts = {**self.default_optimizers(total_steps), **(optimizers or {})}
        nets = dict(zip(NETWORKS, (self.G, self.G_prime, self.D_R, self.D_S), strict=True))
        unknown = set(opts) - set(nets)
        if unknown:
            raise ConfigError(f"GANFaces.compile: unknown optimizer {sorted(unknown)[0]!r}; known: {', '.join(nets)}")
        self.set_optimizers({n: (opts[n], net) for n, net in nets.items()})
        super().compile(optimizer=None, **kwargs)

    # ------------------------------------------------------------------------------- training
    def unpack(self, data):
        """The batch's tensors, checked against the variant and G's image size."""
        use, s = self.use, self.config.image_size
        need = ["synthetic", "real"] + (["identities", "crop"] if use.identity else []) + \
            (["paired_synthetic", "paired_real"] if use.pair_matching else [])
        if not isinstance(data, dict) or not set(need) <= set(data):
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise DataError(f"GANFaces.fit needs dict batches with {', '.join(need)} "
                            f"(tfface.methods.ganfaces.data.ganfaces_batches); got {got}")
        for key in ("synthetic", "real", "paired_synthetic", "paired_real"):
            if key in need and tuple(data[key].shape[1:]) != (s, s, 3):
                raise DataError(f"{key}: G was built for {s}x{s}x3 images (model.image_size), got a batch of "
                                f"{tuple(data[key].shape)}")
        return {k: data[k] for k in need}

    def train_step(self, data):
        b = self.unpack(data)
        cfg, use = self.config, self.use
        x, y = tf.cast(b["synthetic"], tf.float32), tf.cast(b["real"], tf.float32)
        with tf.GradientTape(persistent=True) as tape:
            # the forward pass, shared by all four updates
            x_hat = self.G(x, training=True)  # G(x), dropout on
            x_til = self.G_prime(x_hat, training=True)  # G'(G(x)): the forward cycle only
            l_g = self.average(l1(x_hat, self.D_R(x_hat, training=True)))  # Eq. 2
            dr_real = self.average(l1(y, self.D_R(y, training=True)))
            l_gp = self.average(l1(x_til, self.D_S(x_til, training=True)))  # Eq. 3
            ds_real = self.average(l1(x, self.D_S(x, training=True)))  # D_S's "real" is x itself (A22)
            l_dr = dr_real - self.k_r * l_g  # Eq. 4
            l_ds = ds_real - self.k_s * l_gp  # Eq. 5
            l_cyc = self.average(l1(x_til, x))  # Eq. 1
            l_id = self.average(self.pixel_identity(x_hat, x))
            loss_g = l_g + cfg.lambda_id * l_id  # Eq. 8
            loss_gp = l_gp  # Eq. 9
            if use.cycle:
                loss_g += cfg.lambda_cyc * l_cyc
                loss_gp += cfg.lambda_cyc * l_cyc
            logs = {}
            if use.pair_matching:  # G' as the pair-matching discriminator D_P (Eq. 6)
                dp_real = self.average(l1(b["paired_synthetic"], self.G_prime(b["paired_real"], training=True)))
                l_dp = dp_real - self.k_p * l_cyc if use.cycle else dp_real
                loss_gp += cfg.lambda_dp * l_dp
                logs.update(l_dp=l_dp, dp_real=dp_real)
            if use.identity:  # Eq. 7, on the global batch, centroids updated first
                l_c, centroids = self.identity_loss(x_hat, b["identities"], b["crop"])
                loss_g += cfg.lambda_c * l_c / num_replicas()
            # each optimizer's own loss scale (1 but under mixed_float16's LossScaleOptimizer)
            losses = {n: self.optimizers[n].scale_loss(v) for n, v in
                      (("g", loss_g), ("g_prime", loss_gp), ("d_r", l_dr), ("d_s", l_ds))}
        self.apply_all(tape, losses)
        del tape
        shared = {}
        if use.identity:
            self.centroids.assign(centroids)
            shared["l_c"] = l_c
        # BEGAN's balance (gamma L_real - L_fake) on global values, k clipped to [0, 1]; M = L_real + |balance|
        shared |= self.balance("r", self.k_r, _global(dr_real), _global(l_g))
        shared |= self.balance("s", self.k_s, _global(ds_real), _global(l_gp))
        if use.pair_matching:
            shared |= self.balance("p", self.k_p, _global(logs["dp_real"]), _global(l_cyc), move=use.cycle)
        self.update_ema()
        self.track({"l_g": l_g, "l_g_prime": l_gp, "l_dr": l_dr, "l_ds": l_ds, "dr_real": dr_real,
                    "ds_real": ds_real, "l_cyc": l_cyc, "l_id": l_id, **logs})
        self.track(shared, shared=True)
        return self.logs()

    def apply_all(self, tape, losses: dict) -> None:
        """Each (scaled) loss differentiated w.r.t. its network only, all gradients taken before any is
        applied (a ``LossScaleOptimizer`` unscales its own)."""
        grads = {n: tape.gradient(loss, self.networks[n].trainable_variables) for n, loss in losses.items()}
        for n, g in grads.items():
            self.apply(self.optimizers[n], g, self.networks[n].trainable_variables)

    def balance(self, game: str, k, real: tf.Tensor, fake: tf.Tensor, move: bool = True) -> dict:
        """``k <- clip(k + lambda_k (gamma real - fake), 0, 1)`` (Sec. 3.1); logs k and BEGAN's convergence
        measure ``M = real + |gamma real - fake|``."""
        cfg = self.config
        bal = cfg.gamma * real - fake
        if move:
            k.assign(tf.clip_by_value(k + cfg.lambda_k * bal, 0.0, 1.0))
        return {f"k_{game}": tf.identity(k), f"m_{game}": real + tf.abs(bal)}

    def update_ema(self) -> None:
        """The moving average of G's weights (decay with TF's ``num_updates`` warm-up, spec A16)."""
        cfg = self.config
        decay = tf.constant(cfg.ema_decay, tf.float32)
        if cfg.ema_warmup:
            t = tf.cast(self.optimizers["g"].iterations, tf.float32)
            decay = tf.minimum(decay, (1.0 + t) / (10.0 + t))
        for shadow, v in zip(self.ema_weights, self.G.trainable_variables, strict=True):
            shadow.assign(decay * shadow + (1.0 - decay) * v)

    def pixel_identity(self, x_hat: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        """Per-example L_id: mean ``|x - G(x)|`` over the rendered face (pixels above the black background)."""
        mask = tf.cast(x > -1.0 + 0.5 / 127.5, tf.float32)
        return tf.reduce_mean(mask * tf.abs(x_hat - x), axis=[1, 2, 3])

    def c_inputs(self, x_hat: tf.Tensor, crop: tf.Tensor | None = None) -> tf.Tensor:
        """What C sees of G(x): [0, 255] (clipped), a crop at ``crop[:, :2]`` (default: the centre),
        flipped where ``crop[:, 2]`` (and ``c_flip``), per-image standardised (or back to [-1, 1])."""
        cfg = self.config
        k, s = cfg.crop_size, cfg.image_size
        img = tf.clip_by_value((tf.cast(x_hat, tf.float32) + 1.0) * 127.5, 0.0, 255.0)
        if crop is None:
            n = tf.shape(img)[0]
            crop = tf.concat([tf.fill([n, 2], (s - k) // 2), tf.zeros([n, 1], tf.int32)], 1)
        crop = tf.cast(crop, tf.int32)
        rows = crop[:, 0:1] + tf.range(k)[None]
        cols = crop[:, 1:2] + tf.range(k)[None]
        img = tf.gather(tf.gather(img, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
        if cfg.c_flip:
            img = tf.where(crop[:, 2, None, None, None] > 0, tf.reverse(img, axis=[2]), img)
        return tf.image.per_image_standardization(img) if cfg.c_standardize else img / 127.5 - 1.0

    def embed(self, x_hat: tf.Tensor, crop: tf.Tensor | None = None) -> tf.Tensor:
        """``f = C(aug(G(x)))``, L2-normalised, C in inference mode (its weights frozen; gradients reach G)."""
        f = self.C(self.c_inputs(x_hat, crop), training=False)
        return tf.math.l2_normalize(tf.cast(f, tf.float32), axis=-1)

    def identity_loss(self, x_hat, ids, crop):
        """``(L_C on the global batch, the updated centroids)`` (Eq. 7 after the centroid update)."""
        f = _gather(self.embed(x_hat, crop))
        ids = _gather(tf.cast(ids, tf.int32))
        centroids = centroid_update(tf.convert_to_tensor(self.centroids), ids, tf.stop_gradient(f), self.config.beta)
        loss = magnet_loss(f, ids, tf.stop_gradient(centroids), self.config.eta, self.config.sigma_is_variance)
        return loss, centroids

    # ------------------------------------------------------------------------------ inference
    def ema_generator(self) -> keras.Model:
        """A copy of G holding the EMA weights (what generates the dataset), refreshed on every call."""
        cfg = self.config
        if self._generation.net is None:
            self._generation.net = refiner(cfg.image_size, cfg.ngf, cfg.res_blocks, skips=True, dropout=cfg.dropout,
                                           norm_everywhere=cfg.norm_everywhere, seed=cfg.seed + 1000,
                                           name="generator_ema")
        net = self._generation.net
        for w, shadow in zip(net.trainable_variables, self.ema_weights, strict=True):
            w.assign(shadow)
        return net

    def check_images(self, x, where: str = "synthetic") -> np.ndarray:
        s = self.config.image_size
        x = np.asarray(x, np.float32)
        if x.ndim != 4 or x.shape[1:] != (s, s, 3):
            raise DataError(f"{where}: G was built for {s}x{s}x3 images (model.image_size), got an array of {x.shape}")
        if len(x) == 0:
            raise DataError(f"{where}: no images")
        return x

    def generate(self, x, ema: bool = True, dropout: bool | None = None, batch_size: int = 256) -> np.ndarray:
        """Refined images (float32 in [-1, 1]) of renders ``x`` ([N, S, S, 3] in [-1, 1]) by the EMA copy of G
        (``ema``), with dropout on unless ``dropout=False`` (default: ``dropout_at_generation``; spec A11)."""
        x = self.check_images(x)
        net = self.ema_generator() if ema else self.G
        training = self.config.dropout_at_generation if dropout is None else bool(dropout)
        # training=True switches only G's dropout: G has no batch statistics (InstanceNorm only)
        return np.concatenate([np.asarray(net(x[i:i + batch_size], training=training))
                               for i in range(0, len(x), batch_size)]).astype(np.float32)

    def generator_model(self, name: str = "ganfaces_generator") -> keras.Model:
        """The deployable generator: ``synthetic_images`` [None, S, S, 3] in [-1, 1] -> ``refined_images``
        (float32, [-1, 1]), the EMA weights in inference mode (deterministic: dropout off)."""
        s = self.config.image_size
        x_in = keras.Input((s, s, 3), name=SYNTHETIC_IMAGES)
        out = keras.layers.Activation("linear", dtype="float32", name=REFINED_IMAGES)(self.ema_generator()(x_in))
        return keras.Model(x_in, out, name=name)

    # -------------------------------------------------------------------------- serialisation
    def get_config(self):
        return {"name": self.name, "config": dataclasses.asdict(self.config), "num_identities": self.num_identities,
                "embedder": keras.saving.serialize_keras_object(self.C) if self.C is not None else None}

    @classmethod
    def from_config(cls, config):
        import copy

        config = copy.deepcopy(config)
        if config.get("embedder") is not None:
            config["embedder"] = keras.saving.deserialize_keras_object(config["embedder"])
        return cls(**config)
