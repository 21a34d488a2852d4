"""R3AN's networks have exactly the output sizes of the paper's Table 1 (channels-last here)."""

import numpy as np

from tfface.methods.r3an.nets import discriminator, extractor, fc_translator, generator


def _sizes(model, names):
    return [tuple(model.get_layer(n).output.shape[1:]) for n in names]


def test_generator_table1_sizes():
    g = generator()
    assert _sizes(g, ["fconv1"]) == [(4, 4, 512)]
    assert tuple(g.get_layer("fconv2_crop").output.shape[1:]) == (7, 7, 128)
    assert _sizes(g, ["fconv3", "fconv4", "face"]) == [(14, 14, 32), (28, 28, 8), (56, 56, 3)]
    out = g(np.random.default_rng(0).normal(size=(2, 256)).astype("float32"))
    assert out.shape == (2, 56, 56, 3) and float(np.abs(out).max()) <= 1.0


def test_extractor_table1_sizes():
    e = extractor()
    names = ["conv1_project_bn", "conv2_project_bn", "conv3_project_bn", "conv4_project_bn", "conv5_project_bn",
             "conv6", "pooling", "fc"]
    assert _sizes(e, names) == [(28, 28, 32), (14, 14, 64), (14, 14, 96), (7, 7, 160), (7, 7, 320),
                                (7, 7, 1280), (1280,), (256,)]


def test_discriminator_table1_sizes():
    d = discriminator()
    names = ["conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc"]
    assert _sizes(d, names) == [(28, 28, 4), (14, 14, 8), (7, 7, 16), (4, 4, 32), (2, 2, 64), (1, 1, 128), (1,)]


def test_fc_baseline_parameters_match_g_plus_e():
    trainable = lambda m: sum(int(np.prod(w.shape)) for w in m.trainable_weights)  # noqa: E731
    ge = trainable(generator()) + trainable(extractor())
    fc = trainable(fc_translator())
    assert abs(fc - ge) / ge < 0.02, (fc, ge)
