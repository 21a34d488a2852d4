"""DDL fine-tuning: a pretrained recognizer trained with ArcFace/CosFace plus the Distribution
Distillation Loss on batches of easy (teacher) and hard (student) samples.

Huang et al., "Distribution Distillation Loss: Generic Approach for Improving Face Recognition from
Hard Samples" (arXiv 2002.03662). The teacher is not a second network: one embedder embeds easy and
hard samples in the same forward pass, and the teacher distribution is re-estimated from the current
weights in every batch (Sec. 3). The loss is :class:`tfface.losses.ddl.DistributionDistillationLoss`.

Batches come from :class:`tfface.methods.ddl.data.DDLBatchBuilder`: ``x = {"identities", "pair_a",
"pair_b"}`` each ``[b, K+1, H, W, 3]`` (branch 0 = teacher), ``y = {"identities", "pairs"}`` each
``[b, K+1]`` class labels. Under ``tf.distribute`` each replica receives ``b / N`` rows of every branch.

Example:
  >>> import keras, numpy as np
  >>> from tfface.methods.ddl.data import DDLBatchBuilder, resolution_split
  >>> from tfface.methods.ddl import build_ddl
  >>> from tfface.methods.recognizer import build_recognizer
  >>> rec = build_recognizer("mobilenet_v2", (32, 32, 3), embedding_dim=16, num_classes=4,
  ...                        backbone_kwargs={"width": 0.25, "last_channels": 32})
  >>> rng = np.random.default_rng(0)
  >>> imgs = rng.integers(0, 255, (48, 32, 32, 3), dtype=np.uint8); labels = np.repeat(np.arange(8), 6)
  >>> easy, hard = resolution_split(imgs, labels, factors=(4,))
  >>> builder = DDLBatchBuilder(easy, hard, b=4)
  >>> model = build_ddl(rec.embedding_model(), builder.num_classes, num_students=1,
  ...                   loss={"bins": 201}, margin_kwargs={"s": 16.0, "m": 0.3})
  >>> model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
  >>> history = model.fit(builder.dataset(steps=2), epochs=1, verbose=0)
  >>> "ddl" in history.history and "order" in history.history
  True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfface.errors import ConfigError
from tfface.losses.ddl import DDLBranch, DDLLossConfig, DistributionDistillationLoss
from tfface.methods.base import MethodModel, from_nested_config, num_replicas
from tfface.nets import get_margin_head

__all__ = ["DDL", "DDLHistogramCallback", "build_ddl", "clone_embedder", "init_centres"]

_KEYS = ("identities", "pair_a", "pair_b")
CLASSIFY = ("all", "identities")


@keras.saving.register_keras_serializable(package="tfface")
class DDL(MethodModel):
    """ArcFace/CosFace + DDL fine-tuning (Eq. 8: ``L = L_DDL + L_cls``) with ``model.fit``.

    One training step, per replica of the current strategy:

    1. one forward pass of the embedder over all ``3 b (K+1)`` images of the (local) batch, so
       BatchNorm sees easy and hard samples together (with synchronised BN: the global batch);
    2. ``L_cls``: the margin head's cross-entropy (ArcFace Eq. 3 / CosFace Eq. 4, weight 1 as in
       Eq. 8) over the classified images (``classify="all"``: the identity samples and both images of
       every pair; ``"identities"``: only the identity samples, as the authors' code), averaged over
       the GLOBAL count with ``tf.nn.compute_average_loss``;
    3. ``L_DDL`` (Eqs. 1-7) on the GLOBAL batch: the replicas' embeddings are gathered with
       ``ReplicaContext.all_gather`` (its gradient sums over replicas and slices back), the loss is the
       same on every replica and enters as ``L_DDL / N``, so the summed gradients equal one device's;
    4. ``optimizer.scale_loss`` / ``optimizer.apply`` as :class:`tfface.methods.recognizer.Recognizer`.

    Logged (per epoch means): ``loss``, ``cls``, ``accuracy`` and, with a DDL loss, ``ddl``,
    ``kl_pos``, ``kl_neg``, ``order`` and per distribution ``<name>_pos_mean``, ``<name>_neg_mean``,
    ``<name>_overlap`` (soft histogram intersection of its positive and negative histograms; names
    ``teacher``, ``student_1``..). Shares of a global mean are multiplied by N before the trackers,
    so N replicas log what one device logs. Pair-similarity histograms go to TensorBoard through
    :class:`DDLHistogramCallback`.

    ``loss=None`` trains the margin loss alone on the same batches: the fair fine-tuning baseline.

    Args:
      embedder: images -> embeddings (e.g. ``Recognizer.embedding_model()`` or a saved ``embedder.keras``).
      margin: a margin head over the fine-tuning identities (see :func:`tfface.nets.get_margin_head`).
      num_students: K, the number of student distributions in every batch.
      loss: a :class:`DDLLossConfig`, a dict of its fields, or None (no DDL).
      classify: ``all`` or ``identities`` (which images get the margin loss; A9 in docs/methods/ddl.md).
      seed: the seed of the random-negative draws (``negative_mining="random"``).
    """

    def __init__(self, embedder: keras.Model, margin: keras.layers.Layer, num_students: int = 1,
                 loss: DDLLossConfig | Mapping | None = None, classify: str = "all", seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_students, bool) or int(num_students) != num_students or num_students < 1:
            raise ConfigError(f"num_students: must be an integer >= 1, got {num_students!r}")
        if classify not in CLASSIFY:
            raise ConfigError(f"classify: {classify!r} is not one of {list(CLASSIFY)}")
        if isinstance(loss, Mapping):
            from tfface.config import from_dict

            loss = from_dict(DDLLossConfig, dict(loss), "loss")
        self.embedder = embedder
        self.margin = margin
        self.num_students = int(num_students)
        self.loss_config = loss
        self.ddl_loss = DistributionDistillationLoss(loss) if loss is not None else None
        self.classify = classify
        self.seed = int(seed)
        names = ["loss", "cls"]
        if self.ddl_loss is not None:
            k = 1 if loss.students == "mixture" else self.num_students
            names += ["ddl", "kl_pos", "kl_neg", "order"]
            for d in ["teacher"] + [f"student_{i}" for i in range(1, k + 1)]:
                names += [f"{d}_pos_mean", f"{d}_neg_mean", f"{d}_overlap"]
        self.init_trackers(names)
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    # ----------------------------------------------------------------------------------- model
    def build_for_compile(self):
        self.build()

    def build(self, input_shape=None):
        if not self.margin.built:
            self.margin.build((None, int(self.embedder.output_shape[-1])))
        self.built = True

    def call(self, inputs, training=False):
        """Embeddings of ``images`` [B, H, W, 3], or of each part of a batch dict (``[b, K+1, D]`` each)."""
        if isinstance(inputs, Mapping):
            return self._embed_batch(inputs, training)
        return self.embedder(inputs, training=training)

    def _embed_batch(self, x, training):
        """One forward pass over every image of a batch dict: ``{key: [b, K+1, D]}``."""
        parts = [tf.convert_to_tensor(x[k]) for k in _KEYS]
        shape = tf.shape(parts[0])
        flat = tf.reshape(tf.stack(parts, 0), tf.concat([[-1], shape[2:]], 0))  # [3 b (K+1), H, W, C]
        emb = tf.cast(self.embedder(flat, training=training), tf.float32)
        emb = tf.reshape(emb, [len(_KEYS), shape[0], shape[1], -1])
        return {k: emb[i] for i, k in enumerate(_KEYS)}

    def extra_metrics(self):
        return [self.accuracy_tracker]

    # -------------------------------------------------------------------------------- training
    def _check_layout(self, x, y):
        if not isinstance(x, Mapping) or set(_KEYS) - set(x):
            raise ConfigError(f"DDL batches: x must be a dict with keys {list(_KEYS)} "
                              f"(see tfface.methods.ddl.data.DDLBatchBuilder)")
        if not isinstance(y, Mapping) or {"identities", "pairs"} - set(y):
            raise ConfigError("DDL batches: y must be a dict with keys ['identities', 'pairs']")
        k1 = x["identities"].shape[1]
        if k1 is not None and k1 != self.num_students + 1:
            raise ConfigError(f"num_students: the model has {self.num_students} student(s) but the batch has "
                              f"{k1} branches (teacher + {k1 - 1} students)")

    def _branches(self, emb: dict) -> tuple[DDLBranch, list[DDLBranch]]:
        """The GLOBAL batch's branches: embeddings gathered over replicas along the b axis."""
        stacked = tf.stack([emb[k] for k in _KEYS], axis=1)  # [b_local, 3, K+1, D]
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            stacked = ctx.all_gather(stacked, axis=0)  # [b, 3, K+1, D], replica order = batch order
        branches = [DDLBranch(stacked[:, 0, k], stacked[:, 1, k], stacked[:, 2, k])
                    for k in range(self.num_students + 1)]
        return branches[0], branches[1:]

    def compute_losses(self, x, y, training=False):
        """``(total share, cls share, ddl value or None, parts, labels, logits)`` of this replica."""
        self._check_layout(x, y)
        emb = self._embed_batch(x, training)
        d = tf.shape(emb["identities"])[-1]
        if self.classify == "all":
            feats = tf.concat([tf.reshape(emb[k], [-1, d]) for k in _KEYS], 0)
            pl = tf.reshape(y["pairs"], [-1])
            labels = tf.concat([tf.reshape(y["identities"], [-1]), pl, pl], 0)
        else:
            feats = tf.reshape(emb["identities"], [-1, d])
            labels = tf.reshape(y["identities"], [-1])
        labels = tf.cast(labels, tf.int32)
        logits = self.margin(feats, labels)
        per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        cls = self.average(per_example)
        total = cls
        ddl, parts = None, {}
        if self.ddl_loss is not None:
            teacher, students = self._branches(emb)
            it = tf.cast(self.optimizer.iterations if self.optimizer is not None else 0, tf.int64)
            ddl, parts = self.ddl_loss(teacher, students, seed=tf.stack([it, tf.constant(self.seed, tf.int64)]))
            total = total + ddl / num_replicas()  # the same global value on every replica
        if self.losses:
            total += self.regularization()
        return total, cls, ddl, parts, labels, logits

    def _update_metrics(self, total, cls, ddl, parts, labels, logits):
        self.track({"loss": total, "cls": cls})  # this replica's shares of global means
        if ddl is not None:  # computed on the all-gathered batch: the same global value on every replica
            self.track({"ddl": ddl, **{k: v for k, v in parts.items() if k != "ddl"}}, shared=True)
        self.accuracy_tracker.update_state(labels, logits)
        return self.logs()

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            total, cls, ddl, parts, labels, logits = self.compute_losses(x, y, training=True)
            scaled = self.optimizer.scale_loss(total)
        grads = tape.gradient(scaled, variables)
        self.apply(self.optimizer, grads, variables)
        return self._update_metrics(total, cls, ddl, parts, labels, logits)

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._update_metrics(*self.compute_losses(x, y, training=False))

    def distribution_statistics(self, x) -> dict[str, np.ndarray]:
        """Positive (kept) and negative similarities per distribution of one batch dict, in inference
        mode, on one device: ``{"teacher_pos": [..], "teacher_neg": [b], "student_1_pos": ...}``."""
        emb = self._embed_batch(x, training=False)
        branches = [DDLBranch(emb["identities"][:, k], emb["pair_a"][:, k], emb["pair_b"][:, k])
                    for k in range(self.num_students + 1)]
        cfg = self.loss_config or DDLLossConfig()
        loss = DistributionDistillationLoss(DDLLossConfig(bins=cfg.bins, gamma=cfg.gamma,
                                                          node_range=cfg.node_range,
                                                          positive_threshold=cfg.positive_threshold,
                                                          students="specific"))
        _, parts = loss(branches[0], branches[1:])
        out = {}
        for name in ["teacher"] + [f"student_{k}" for k in range(1, self.num_students + 1)]:
            keep = parts[f"{name}_pos_keep"].numpy() > 0
            out[f"{name}_pos"] = parts[f"{name}_pos"].numpy()[keep]
            out[f"{name}_neg"] = parts[f"{name}_neg"].numpy()
        return out

    # --------------------------------------------------------------------------- serialisation
    def get_config(self):
        from dataclasses import asdict

        return {
            "name": self.name, "trainable": self.trainable,
            "embedder": keras.saving.serialize_keras_object(self.embedder),
            "margin": keras.saving.serialize_keras_object(self.margin),
            "num_students": self.num_students,
            "loss": asdict(self.loss_config) if self.loss_config is not None else None,
            "classify": self.classify, "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        return from_nested_config(cls, config, ("embedder", "margin"))


# ------------------------------------------------------------------------------------ builders
def clone_embedder(embedder: keras.Model, sync_batchnorm: bool | None = None) -> keras.Model:
    """A copy of a functional embedder with its weights, made in the current scope (call inside
    ``strategy.scope()`` to move a model trained elsewhere under a strategy). ``sync_batchnorm``
    (None: when the strategy has > 1 replica) sets every BatchNormalization's ``synchronized``."""
    from tfface.distribute import resolve_sync_batchnorm

    sync = resolve_sync_batchnorm(sync_batchnorm)

    def clone_layer(layer):
        cfg = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            cfg["synchronized"] = sync
        elif "sync_batchnorm" in cfg:
            cfg["sync_batchnorm"] = sync
        return layer.__class__.from_config(cfg)

    clone = keras.models.clone_model(embedder, clone_function=clone_layer, recursive=True)
    clone.set_weights(embedder.get_weights())
    return clone


def init_centres(margin: keras.layers.Layer, embeddings: np.ndarray, labels: np.ndarray) -> None:
    """Set the margin head's class centres to the L2-normalised class-mean embeddings (A10)."""
    e = np.asarray(embeddings, np.float32)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    c = int(margin.num_classes)
    labels = np.asarray(labels).astype(np.int64)
    if labels.min() < 0 or labels.max() >= c:
        raise ConfigError(f"labels: class labels must be in [0, {c}), got [{labels.min()}, {labels.max()}]")
    means = np.zeros((c, e.shape[1]), np.float32)
    np.add.at(means, labels, e)
    missing = np.setdiff1d(np.arange(c), labels)
    if len(missing):
        raise ConfigError(f"labels: classes {missing[:5].tolist()} have no embedding to initialise a centre")
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    margin.kernel.assign(means.T)


def build_ddl(
    embedder: keras.Model | str,
    num_classes: int,
    num_students: int = 1,
    margin: str = "arcface",
    margin_kwargs: Mapping | None = None,
    loss: DDLLossConfig | Mapping | None = None,
    classify: str = "all",
    sync_batchnorm: bool | None = None,
    centres: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
    name: str = "ddl",
) -> DDL:
    """A :class:`DDL` model starting from a pretrained embedder (a model or a ``.keras`` path).

    Call it inside ``strategy.scope()``: the embedder is loaded or cloned there (with synchronised
    BatchNorm when the strategy has several replicas, ``sync_batchnorm=None``). ``centres``:
    ``(images float32 preprocessed [N, H, W, 3], class labels [N])`` to initialise the new head's
    centres from class-mean embeddings (A10); otherwise the head starts at random.
    """
    if isinstance(embedder, str):
        embedder = keras.saving.load_model(embedder, compile=False)
    if not isinstance(embedder, keras.Model):
        raise ConfigError(f"embedder: expected a keras.Model or a .keras path, got {type(embedder).__name__}")
    embedder = clone_embedder(embedder, sync_batchnorm)
    head = get_margin_head(margin, int(num_classes), name="margin_head", **dict(margin_kwargs or {}))
    head.build((None, int(embedder.output_shape[-1])))
    if centres is not None:
        images, labels = centres
        emb = embedder.predict(images, batch_size=256, verbose=0)
        init_centres(head, emb, labels)
    model = DDL(embedder, head, num_students=num_students, loss=loss, classify=classify, seed=seed, name=name)
    model.build()
    return model


# ------------------------------------------------------------------------------------ callback
class DDLHistogramCallback(keras.callbacks.Callback):
    """Histograms of the teacher's and students' positive and negative pair similarities in TensorBoard.

    At the end of every ``every_n_epochs``-th epoch (and at the start of training) the model embeds
    one fixed batch (a dict as :class:`tfface.methods.ddl.data.DDLBatchBuilder` makes, in inference
    mode, on one device) and writes ``tf.summary.histogram`` under ``<log_dir>/distributions``:
    ``teacher/positive``, ``teacher/negative``, ``student_k/positive``, ``student_k/negative``
    (branch names from ``names`` when given), plus scalars of their means. A callback rather than
    summaries inside ``train_step``: the step stays free of summary ops under ``tf.distribute``.
    """

    def __init__(self, batch: Mapping, log_dir: str, every_n_epochs: int = 1, names: Sequence[str] | None = None):
        super().__init__()
        self.batch = {k: np.asarray(batch[k]) for k in _KEYS}
        self.log_dir = log_dir
        self.every = max(1, int(every_n_epochs))
        self.names = list(names) if names else None
        self._writer = None

    def _write(self, step: int):
        if self._writer is None:
            import os

            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "distributions"))
        stats = self.model.distribution_statistics(self.batch)
        default = ["teacher"] + [f"student_{k}" for k in range(1, self.model.num_students + 1)]
        shown = self.names or default
        with self._writer.as_default(step=step):
            for key, label in zip(default, shown, strict=False):
                for kind, short in (("positive", "pos"), ("negative", "neg")):
                    v = stats[f"{key}_{short}"]
                    if v.size:
                        tf.summary.histogram(f"{label}/{kind}", v, buckets=50)
                        tf.summary.scalar(f"{label}/{kind}_mean", float(v.mean()))
        self._writer.flush()

    def on_train_begin(self, logs=None):
        self._write(0)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self._write(epoch + 1)
