"""The face recognizer: backbone -> embedding head, trained through a margin-softmax head.

``Recognizer.call`` returns embeddings (so the model builds under a ``tf.distribute`` strategy and
the embedding part exports on its own); ``train_step`` adds the margin head and the cross-entropy
over the margin logits (ArcFace, Deng et al. CVPR 2019, Eq. 3; CosFace, Wang et al. CVPR 2018, Eq. 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from tfface.distribute import resolve_sync_batchnorm
from tfface.errors import ConfigError
from tfface.methods.base import MethodModel, from_nested_config
from tfface.nets import EmbeddingHead, build_backbone, get_margin_head


@keras.saving.register_keras_serializable(package="tfface")
class Recognizer(MethodModel):
    """A face recognizer trained with a margin-softmax loss: ``backbone -> head -> margin``.

    One training step (``train_step``), per replica of the current ``tf.distribute`` strategy:

    1. ``e = head(backbone(x))``, the D-dim embeddings (float32);
    2. ``f = margin(e, y)``: logits ``s * (cos(m1 * theta_y + m2) - m3)`` for the label and
       ``s * cos(theta_j)`` for the other classes (ArcFace Eq. 3 with m2, CosFace Eq. 4 with m3);
    3. ``L = sum_i CE(f_i, y_i) / B_global`` with ``tf.nn.compute_average_loss`` (the global batch size
       is all-reduced from the replicas' batch sizes), plus the layers' regularisation losses through
       ``tf.nn.scale_regularization_loss``. There is no Keras ``Loss`` object, so the loss is not
       divided by the number of replicas a second time;
    4. gradients of ``optimizer.scale_loss(L)`` (a ``LossScaleOptimizer`` under ``mixed_float16``,
       identity otherwise), applied with ``optimizer.apply``; gradients are summed over replicas.

    The logged ``loss`` is ``L * num_replicas_in_sync`` before it enters the ``Mean`` tracker (whose
    state is summed over replicas), so N replicas log what one device logs on the same global batch.
    The logged ``accuracy`` is the top-1 accuracy of the margin logits (stricter than the nearest
    class centre, since the margin lowers the target logit). Weight decay belongs to the optimizer
    (``SGD(weight_decay=...)``) or to the layers' ``kernel_regularizer``.

    ``call(images)`` returns the embeddings; :meth:`embedding_model` gives a functional
    ``images -> embeddings`` model sharing the weights, for saving and export (export that, not the
    trainer).

    Example:
      >>> import keras, numpy as np
      >>> from tfface.methods.recognizer import build_recognizer
      >>> model = build_recognizer("mobilenet_v2", (32, 32, 3), embedding_dim=16, num_classes=4,
      ...                          backbone_kwargs={"width": 0.25, "last_channels": 32},
      ...                          margin_kwargs={"s": 16.0, "m": 0.3})
      >>> model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
      >>> x = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
      >>> history = model.fit(x, np.arange(8) % 4, batch_size=4, epochs=1, verbose=0)
      >>> sorted(history.history)
      ['accuracy', 'loss']
      >>> tuple(model.embedding_model()(x).shape)
      (8, 16)

    Args:
      backbone: a functional model images -> feature map (see :func:`tfface.nets.build_backbone`).
      head: the :class:`tfface.nets.EmbeddingHead` (or any layer feature map -> embeddings).
      margin: a margin head called as ``margin(embeddings, labels)`` (see :mod:`tfface.nets.margin_heads`).
    """

    def __init__(self, backbone: keras.Model, head: keras.layers.Layer, margin: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.head = head
        self.margin = margin
        self.init_trackers(["loss"])
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    # ----------------------------------------------------------------------------------- model
    def build(self, input_shape):
        features = self.backbone.compute_output_shape(tuple(input_shape))
        if not self.head.built:
            self.head.build(features)
        if not self.margin.built:
            self.margin.build(self.head.compute_output_shape(features))
        self.built = True

    def call(self, images, training=False):
        return self.head(self.backbone(images, training=training), training=training)

    def extra_metrics(self):
        return [self.accuracy_tracker]

    def embedding_model(self, normalize: bool = False, name: str = "embedder") -> keras.Model:
        """A functional model ``images -> embeddings`` (input ``images``, output ``embeddings``, float32)
        sharing this model's weights; ``normalize=True`` L2-normalises the embeddings."""
        inp = keras.Input(tuple(self.backbone.input_shape[1:]), name="images")
        emb = self.head(self.backbone(inp))
        if normalize:
            out = keras.layers.UnitNormalization(dtype="float32", name="embeddings")(emb)
        else:
            out = keras.layers.Activation("linear", dtype="float32", name="embeddings")(emb)
        return keras.Model(inp, out, name=name)

    # -------------------------------------------------------------------------------- training
    def build_for_compile(self):
        self.build(self.backbone.input_shape)

    def compute_margin_loss(self, images, labels, sample_weight=None, training=False):
        """(this replica's share of the global mean loss, margin logits); see the class docstring."""
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        embeddings = self(images, training=training)
        logits = self.margin(embeddings, labels)
        per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        if sample_weight is not None:
            per_example = per_example * tf.cast(tf.reshape(sample_weight, [-1]), per_example.dtype)
        loss = self.average(per_example)
        if self.losses:
            loss += self.regularization()
        return loss, logits

    def _update_metrics(self, loss, labels, logits):
        self.track({"loss": loss})  # this replica's share, logged as the global mean
        self.accuracy_tracker.update_state(tf.reshape(labels, [-1]), logits)
        return self.logs()

    def train_step(self, data):
        images, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if labels is None:
            raise ConfigError("Recognizer.fit needs (images, labels) batches")
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            loss, logits = self.compute_margin_loss(images, labels, sample_weight, training=True)
            scaled = self.optimizer.scale_loss(loss)  # LossScaleOptimizer: loss * scale; else identity
        grads = tape.gradient(scaled, variables)
        self.apply(self.optimizer, grads, variables)  # unscales (LSO), skips non-finite steps
        return self._update_metrics(loss, labels, logits)

    def test_step(self, data):
        images, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if labels is None:
            raise ConfigError("Recognizer.evaluate needs (images, labels) batches")
        loss, logits = self.compute_margin_loss(images, labels, sample_weight, training=False)
        return self._update_metrics(loss, labels, logits)

    # --------------------------------------------------------------------------- serialisation
    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "head": keras.saving.serialize_keras_object(self.head),
            "margin": keras.saving.serialize_keras_object(self.margin),
        }

    @classmethod
    def from_config(cls, config):
        return from_nested_config(cls, config, ("backbone", "head", "margin"))


def build_recognizer(
    backbone: str = "mobilenet_v2",
    input_shape: Sequence[int] = (112, 112, 3),
    embedding_dim: int = 128,
    num_classes: int | None = None,
    margin: str = "arcface",
    margin_kwargs: dict | None = None,
    backbone_kwargs: dict | None = None,
    head_kwargs: dict | None = None,
    sync_batchnorm: bool | None = None,
    name: str = "recognizer",
) -> Recognizer:
    """Backbone + :class:`tfface.nets.EmbeddingHead` + margin head, by name, built for ``input_shape``.

    Call it inside ``strategy.scope()`` when training under a strategy. ``sync_batchnorm=None`` turns
    cross-replica BatchNorm statistics on when the current strategy has more than one replica (then N
    replicas compute what one device computes on the global batch); ``backbone_kwargs`` /
    ``head_kwargs`` may override it per part.

    Args:
      backbone: ``mobilenet_v2``, ``iresnet`` or ``resnet`` (see :data:`tfface.nets.BACKBONES`).
      input_shape: ``(H, W, C)`` of the preprocessed float images.
      embedding_dim: D.
      num_classes: training identities (required).
      margin: ``arcface``, ``cosface``, ``sphereface``, ``combined``, ``normsoftmax`` or ``softmax``.
      margin_kwargs, backbone_kwargs, head_kwargs: keyword arguments of those parts.
    """
    if num_classes is None or int(num_classes) < 2:
        raise ConfigError(f"num_classes: must be >= 2, got {num_classes}")
    input_shape = tuple(int(d) for d in input_shape)
    sync = resolve_sync_batchnorm(sync_batchnorm)
    bk = {"sync_batchnorm": sync, **(backbone_kwargs or {})}
    hk = {"sync_batchnorm": sync, **(head_kwargs or {})}
    net = build_backbone(backbone, input_shape, **bk)
    try:
        head = EmbeddingHead(embedding_dim, name="embedding_head", **hk)
    except TypeError as e:
        raise ConfigError(f"head_kwargs: {e}") from e
    mh = get_margin_head(margin, int(num_classes), name="margin_head", **(margin_kwargs or {}))
    model = Recognizer(net, head, mh, name=name)
    model.build((None, *input_shape))
    return model
