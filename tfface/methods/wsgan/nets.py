"""WSGAN's networks (He et al., "Bridging Weak and Strong Modalities via Adversarial Learning", AAAI 2019, Sec. 3).

- :func:`extractor` F (F_W / F_S): input -> feature. The paper's is ResNet-50 at 112x112 with a 256-D
  embedding; here an MLP for feature-level inputs (spec 8.1: 64 -> 128 -> 64) or a small CNN for
  images (spec 8.2), the backbone a constructor choice as the spec suggests;
- :func:`generator` G(f, z): "a fully-connected network with two hidden layers, each followed by BN and
  LReLU": ``concat(f, z)`` -> Dense-BN-LReLU x 2 -> Dense(feature_dim), linear (``residual``: f + that);
  ``use_z=False`` gives the deterministic mapper (M1 of the spec);
- :func:`critic` D: the same shape, scalar output, no sigmoid (a WGAN critic). With weight clipping
  (the paper) every trainable variable, BN's gamma and beta included, is clipped to ``[-c, c]`` by
  :class:`Clip` constraints, which Keras' optimizers apply right after each update (so the clip is part
  of D's optimizer step, also under a strategy). The gradient-penalty option uses LayerNorm instead of
  BN, as WGAN-GP asks (a per-example penalty is ill-defined with batch statistics);
- :func:`z_encoder` E: Dense-LReLU -> Dense(z_dim) (InfoGAN's latent regression; not given in the paper);
- :func:`classifier` W_C: Dense(num_classes) logits.

Widths, the LReLU slope (0.2) and z_dim are not in the paper (spec A1, A9); they are config fields.
BatchNorm is synchronised across replicas (``synchronized=True``), so a batch split over N devices
trains as on one.
"""

from __future__ import annotations

import keras

from tfface.nets.normalization import batch_norm


@keras.saving.register_keras_serializable(package="tfface")
class Clip(keras.constraints.Constraint):
    """Clip every weight to ``[-c, c]`` (WGAN's critic Lipschitz constraint)."""

    def __init__(self, c: float = 0.01):
        self.c = float(c)

    def __call__(self, w):
        return keras.ops.clip(w, -self.c, self.c)

    def get_config(self):
        return {"c": self.c}


def _dense(units: int, name: str, clip: float | None = None) -> keras.layers.Dense:
    cons = Clip(clip) if clip else None
    return keras.layers.Dense(units, name=name, kernel_constraint=cons, bias_constraint=cons)


def _norm(name: str, clip: float | None = None, layer_norm: bool = False):
    if layer_norm:
        return keras.layers.LayerNormalization(name=name)
    bn = batch_norm(name, sync=True, epsilon=1e-5)
    if clip:
        bn.gamma_constraint = bn.beta_constraint = Clip(clip)
    return bn


def _mlp_block(x, width: int, name: str, clip: float | None = None, layer_norm: bool = False):
    x = _dense(width, f"{name}_dense", clip)(x)
    x = _norm(f"{name}_norm", clip, layer_norm)(x)
    return keras.layers.LeakyReLU(0.2, name=f"{name}_lrelu")(x)


def extractor(input_shape: tuple[int, ...], feature_dim: int = 64, hidden: int = 128,
              name: str = "extractor") -> keras.Model:
    """F: a feature vector (MLP: Dense(hidden)-BN-LReLU -> Dense(feature_dim)) or an image (4 stride-2
    convolutions 32-64-128-128 with BN and LReLU, global pooling, Dense(feature_dim)); linear output."""
    x_in = keras.Input(tuple(input_shape), name="inputs")
    if len(input_shape) == 1:
        x = _mlp_block(x_in, hidden, "hidden")
    else:
        x = x_in
        for i, filters in enumerate((32, 64, 128, 128)):
            x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"conv{i}")(x)
            x = keras.layers.LeakyReLU(0.2)(_norm(f"conv{i}_bn")(x))
        x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(x_in, keras.layers.Dense(feature_dim, name="embedding")(x), name=name)


def generator(feature_dim: int = 64, z_dim: int = 16, width: int = 128, use_z: bool = True,
              residual: bool = False, name: str = "generator") -> keras.Model:
    """G(f, z) -> a feature of the strong space (inputs ``[f, z]``; z is ignored when ``use_z=False``)."""
    f_in = keras.Input((feature_dim,), name="condition")
    z_in = keras.Input((z_dim,), name="z")
    x = keras.layers.Concatenate()([f_in, z_in]) if use_z else f_in
    for i in (1, 2):
        x = _mlp_block(x, width, f"hidden{i}")
    out = keras.layers.Dense(feature_dim, name="strong_feature")(x)
    if residual:
        out = keras.layers.Add(name="residual")([f_in, out])
    return keras.Model([f_in, z_in], out, name=name)


def critic(feature_dim: int = 64, width: int = 128, clip: float | None = 0.01, layer_norm: bool = False,
           name: str = "critic") -> keras.Model:
    """D: a strong-space feature -> one unbounded score (``clip``: weight clipping of every variable)."""
    f_in = keras.Input((feature_dim,), name="feature")
    x = f_in
    for i in (1, 2):
        x = _mlp_block(x, width, f"hidden{i}", clip, layer_norm)
    return keras.Model(f_in, _dense(1, "score", clip)(x), name=name)


def z_encoder(feature_dim: int = 64, z_dim: int = 16, width: int = 128, name: str = "z_encoder") -> keras.Model:
    """E: a generated feature -> the z it was generated from."""
    f_in = keras.Input((feature_dim,), name="feature")
    x = keras.layers.LeakyReLU(0.2)(keras.layers.Dense(width, name="hidden")(f_in))
    return keras.Model(f_in, keras.layers.Dense(z_dim, name="z")(x), name=name)


def classifier(feature_dim: int, num_classes: int, name: str = "classifier") -> keras.Model:
    """W_C: a strong-space feature (real or generated) -> class logits."""
    f_in = keras.Input((feature_dim,), name="feature")
    return keras.Model(f_in, keras.layers.Dense(num_classes, name="logits")(f_in), name=name)
