"""GANFaces' networks (Gecer et al., ECCV 2018, Sec. 3-4; layer details from the spec, section 2).

- :func:`refiner` G: synthetic -> realistic. "A shallow ResNet architecture as in [Johnson et al.] with
  only 3 residual blocks", with skip connections and "dropout after each block" (keep 0.9)::

      c7s1-ngf -> d(2 ngf) -> d(4 ngf) -> [R(4 ngf) -> Dropout] x 3 -> u(2 ngf) -> concat d(2 ngf)
               -> u(ngf) -> concat c7s1-ngf -> c7s1-3, tanh

  (reflection padding for the 7 x 7 convs, 3 x 3 stride-2 (transposed) convs, ReLU, no conv biases,
  weights ~ N(0, 0.02); InstanceNorm inside the residual blocks only unless ``norm_everywhere``);
- :func:`refiner` with ``skips=False, dropout=0`` is G': real -> synthetic, the "3DMM fitting network"
  that is also the pair-matching discriminator D_P (Eq. 6);
- :func:`began_discriminator` D_R / D_S: BEGAN autoencoders (ELU, 3 x 3 convs, a dense bottleneck,
  nearest upsampling); an image's score is its L1 reconstruction error (Eqs. 2-5);
- :func:`embedder` C: the spec's small stand-in for NN4 (4 conv-BN-ReLU stride-2 blocks, global
  pooling, dense, L2 normalisation), used frozen. BatchNorm is synchronised across replicas.
"""

from __future__ import annotations

import keras

from tfface.nets.normalization import batch_norm

__all__ = ["ReflectionPadding2D", "began_discriminator", "embedder", "refiner"]


@keras.saving.register_keras_serializable(package="tfface")
class ReflectionPadding2D(keras.layers.Layer):
    """Reflect-pad H and W by ``padding`` pixels (the authors' ``c7s1`` and residual-block padding)."""

    def __init__(self, padding: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, x):
        p = self.padding
        return keras.ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, shape):
        grow = lambda d: None if d is None else d + 2 * self.padding  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def _init():
    return keras.initializers.RandomNormal(0.0, 0.02)


def _conv(filters: int, kernel: int, name: str, strides: int = 1, padding: str = "valid") -> keras.layers.Conv2D:
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                               kernel_initializer=_init(), name=name)


def _instance_norm(name: str) -> keras.layers.GroupNormalization:
    return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, gamma_initializer=keras.initializers.RandomNormal(
        1.0, 0.02), name=name)


def _residual_block(x, filters: int, name: str):
    """R: pad 1 -> conv 3 -> IN -> ReLU -> pad 1 -> conv 3 -> IN, plus the input (no ReLU after the add)."""
    h = _conv(filters, 3, f"{name}_conv1")(ReflectionPadding2D(1, name=f"{name}_pad1")(x))
    h = keras.layers.ReLU(name=f"{name}_relu")(_instance_norm(f"{name}_in1")(h))
    h = _conv(filters, 3, f"{name}_conv2")(ReflectionPadding2D(1, name=f"{name}_pad2")(h))
    return keras.layers.Add(name=f"{name}_add")([x, _instance_norm(f"{name}_in2")(h)])


def refiner(image_size: int = 32, ngf: int = 16, res_blocks: int = 3, skips: bool = True, dropout: float = 0.1,
            norm_everywhere: bool = False, seed: int = 0, name: str = "generator") -> keras.Model:
    """G (``skips=True``, dropout after each residual block) or G' (``skips=False, dropout=0``):
    ``[B, S, S, 3]`` in [-1, 1] -> ``[B, S, S, 3]`` in [-1, 1] (tanh)."""

    def act(h, label):
        if norm_everywhere:
            h = _instance_norm(f"{label}_in")(h)
        return keras.layers.ReLU(name=f"{label}_relu")(h)

    x_in = keras.Input((image_size, image_size, 3), name="images")
    c1 = act(_conv(ngf, 7, "c7s1")(ReflectionPadding2D(3, name="c7s1_pad")(x_in)), "c7s1")
    d1 = act(_conv(2 * ngf, 3, "d1", strides=2, padding="same")(c1), "d1")
    h = act(_conv(4 * ngf, 3, "d2", strides=2, padding="same")(d1), "d2")
    for i in range(res_blocks):
        h = _residual_block(h, 4 * ngf, f"res{i}")
        if dropout > 0:
            h = keras.layers.Dropout(dropout, seed=seed + i, name=f"res{i}_dropout")(h)
    h = keras.layers.Conv2DTranspose(2 * ngf, 3, strides=2, padding="same", use_bias=False, kernel_initializer=_init(),
                                     name="u1")(h)
    h = act(h, "u1")
    if skips:
        h = keras.layers.Concatenate(name="skip_d1")([h, d1])
    h = keras.layers.Conv2DTranspose(ngf, 3, strides=2, padding="same", use_bias=False, kernel_initializer=_init(),
                                     name="u2")(h)
    h = act(h, "u2")
    if skips:
        h = keras.layers.Concatenate(name="skip_c7s1")([h, c1])
    h = _conv(3, 7, "out")(ReflectionPadding2D(3, name="out_pad")(h))
    out = keras.layers.Activation("tanh", dtype="float32", name="refined")(h)
    return keras.Model(x_in, out, name=name)


def began_discriminator(image_size: int = 32, hidden: int = 16, bottleneck: int = 32, repeat: int = 3,
                        name: str = "discriminator") -> keras.Model:
    """A BEGAN autoencoder D: ``[B, S, S, 3]`` -> its reconstruction ``[B, S, S, 3]`` (linear).

    Encoder: conv n, then per stage i: conv n(i+1) x 2 and (but the last) a stride-2 conv; dense to the
    bottleneck. Decoder: dense to ``s x s x n``, per stage: conv n x 2 and (but the last) x2 nearest
    upsampling; conv to 3 channels, centre-cropped to S (112 -> 108 at the paper's size)."""

    def conv(h, filters, label, strides=1):
        return keras.layers.Conv2D(filters, 3, strides=strides, padding="same", activation="elu", name=label)(h)

    x_in = keras.Input((image_size, image_size, 3), name="images")
    h = conv(x_in, hidden, "enc_in")
    for i in range(repeat):
        h = conv(conv(h, hidden * (i + 1), f"enc{i}_a"), hidden * (i + 1), f"enc{i}_b")
        if i < repeat - 1:
            h = conv(h, hidden * (i + 1), f"enc{i}_down", strides=2)
    side = int(h.shape[1])
    z = keras.layers.Dense(bottleneck, name="bottleneck")(keras.layers.Flatten(name="flatten")(h))
    h = keras.layers.Reshape((side, side, hidden), name="reshape")(keras.layers.Dense(side * side * hidden,
                                                                                      name="dec_dense")(z))
    for i in range(repeat):
        h = conv(conv(h, hidden, f"dec{i}_a"), hidden, f"dec{i}_b")
        if i < repeat - 1:
            h = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"dec{i}_up")(h)
    h = keras.layers.Conv2D(3, 3, padding="same", name="dec_out")(h)
    extra = int(h.shape[1]) - image_size
    if extra:
        h = keras.layers.Cropping2D(((extra // 2, extra - extra // 2),) * 2, name="crop")(h)
    out = keras.layers.Activation("linear", dtype="float32", name="reconstruction")(h)
    return keras.Model(x_in, out, name=name)


def embedder(input_size: int = 28, embedding_dim: int = 64, widths: tuple[int, ...] = (32, 64, 128, 128),
             name: str = "embedder") -> keras.Model:
    """C: ``[B, s, s, 3]`` -> L2-normalised ``[B, embedding_dim]`` (conv-BN-ReLU stride-2 blocks, GAP, dense)."""
    x_in = keras.Input((input_size, input_size, 3), name="images")
    h = x_in
    for i, filters in enumerate(widths):
        h = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"conv{i}")(h)
        h = keras.layers.ReLU(name=f"conv{i}_relu")(batch_norm(f"conv{i}_bn", sync=True)(h))
    h = keras.layers.Dense(embedding_dim, name="bottleneck")(keras.layers.GlobalAveragePooling2D(name="pool")(h))
    out = keras.layers.UnitNormalization(axis=-1, dtype="float32", name="embeddings")(h)
    return keras.Model(x_in, out, name=name)
