"""tfface.nets: backbone and head shapes, margin logits computed by hand, config round trips."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from tfface.errors import ConfigError
from tfface.nets import (
    ArcFace,
    CombinedMarginHead,
    CosFace,
    EmbeddingHead,
    NormSoftmax,
    SoftmaxHead,
    SphereFace,
    build_backbone,
    get_margin_head,
    inverted_residual,
    iresnet,
    mobilenet_v2,
)

# ----------------------------------------------------------------------------------------- backbones


@pytest.mark.parametrize(
    ("name", "kwargs", "input_shape", "expected"),
    [
        ("mobilenet_v2", {"width": 0.25, "last_channels": 32}, (32, 32, 3), (2, 2, 32)),
        ("mobilenet_v2", {"width": 0.25, "last_channels": None, "activation": "prelu"}, (56, 56, 3), (4, 4, 40)),
        ("iresnet", {"depth": [1, 1, 1, 1], "width": 8}, (32, 32, 3), (2, 2, 64)),
        ("resnet", {"depth": [1, 1, 1, 1], "width": 8}, (56, 56, 3), (4, 4, 64)),
    ],
)
def test_backbone_output_shapes(name, kwargs, input_shape, expected):
    net = build_backbone(name, input_shape, **kwargs)
    assert net.input.name.startswith("images") or net.inputs[0].name.startswith("images")
    assert net.output_shape == (None, *expected)
    out = net(np.zeros((2, *input_shape), "float32"), training=False)
    assert tuple(out.shape) == (2, *expected)


def test_inverted_residual_is_reusable_and_residual_when_shapes_match():
    inp = keras.Input((8, 8, 16))
    same = inverted_residual(inp, 16, 1, expansion=6, name="a")
    down = inverted_residual(same, 24, 2, expansion=6, name="b")
    model = keras.Model(inp, down)
    names = [layer.name for layer in model.layers]
    assert "a_add" in names and "b_add" not in names  # residual only for stride 1 and equal channels
    assert model.get_layer("a_expand").filters == 16 * 6  # the expansion factor T
    assert model.output_shape == (None, 4, 4, 24)


def test_mobilenet_stage_rows_and_errors():
    net = mobilenet_v2((32, 32, 3), width=1.0, blocks=[(8, 1, 1, 1), (16, 2, 2, 3)], last_channels=None)
    assert net.output_shape == (None, 8, 8, 16)
    assert net.get_layer("stage1_block0_expand").filters == 8 * 3  # per-row expansion overrides T
    with pytest.raises(ConfigError, match="blocks"):
        mobilenet_v2((32, 32, 3), blocks=[(8, 1)])
    with pytest.raises(ConfigError, match="depth"):
        iresnet((32, 32, 3), depth=17)


def test_build_backbone_unknown_name_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="'vgg16'"):
        build_backbone("vgg16", (32, 32, 3))
    with pytest.raises(ConfigError, match="mobilenet_v2"):
        build_backbone("mobilenet_v2", (32, 32, 3), no_such_argument=1)


def test_sync_batchnorm_flag_reaches_every_batchnorm():
    net = iresnet((32, 32, 3), depth=[1, 1, 1, 1], width=8, sync_batchnorm=True)
    bns = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(bn.synchronized for bn in bns)


# ----------------------------------------------------------------------------------- embedding head


@pytest.mark.parametrize("kind", ["flatten", "gdc"])
def test_embedding_head_shape_dtype_and_config_round_trip(kind):
    head = EmbeddingHead(24, kind=kind, dropout=0.1, seed=3, name="head")
    x = np.random.default_rng(0).normal(size=(3, 4, 4, 16)).astype("float32")
    y = head(x, training=False)
    assert tuple(y.shape) == (3, 24) and y.dtype == "float32"
    clone = EmbeddingHead.from_config(head.get_config())
    clone.build((None, 4, 4, 16))
    clone.set_weights(head.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x)), np.asarray(y), rtol=1e-6, atol=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(head))
    assert isinstance(restored, EmbeddingHead) and restored.kind == kind and restored.seed == 3
    with pytest.raises(ConfigError):
        EmbeddingHead(8, kind="pool")


# ------------------------------------------------------------------------------------- margin heads
S = 8.0


def _fixed_case():
    """Embeddings [3, 2] and centres W [2, 4] (unit columns) with known angles."""
    angles = np.array([0.3, 1.2, 3.0])  # embedding angles in the plane
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype("float32") * 2.5  # norm does not matter
    centre_angles = np.array([0.0, 1.0, 2.0, 0.05])
    w = np.stack([np.cos(centre_angles), np.sin(centre_angles)], axis=0).astype("float32")
    cos = np.cos(angles[:, None] - centre_angles[None, :])
    labels = np.array([0, 1, 3])  # the third embedding is ~pi - 0.05 away from its centre
    return emb, w, cos, labels


def _run(head, emb, w, labels):
    head.build((None, 2))
    head.kernel.assign(w)
    return np.asarray(head(emb, labels))


def test_arcface_target_logit_is_s_cos_theta_plus_m_and_others_s_cos():
    emb, w, cos, labels = _fixed_case()
    m = 0.5
    logits = _run(ArcFace(4, s=S, m=m), emb, w, labels)
    expected = S * cos.copy()
    for i, y in enumerate(labels):
        theta = math.acos(cos[i, y])
        if cos[i, y] > math.cos(math.pi - m):
            expected[i, y] = S * math.cos(theta + m)  # ArcFace Eq. 3
        else:  # theta + m > pi: arcface_torch's fallback cos(theta) - sin(pi - m) * m
            expected[i, y] = S * (cos[i, y] - math.sin(math.pi - m) * m)
    assert cos[2, 3] < math.cos(math.pi - m)  # the case exercises the fallback
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-4)
    assert logits.dtype == np.float32


def test_arcface_easy_margin_keeps_cos_where_negative():
    emb, w, cos, labels = _fixed_case()
    logits = _run(ArcFace(4, s=S, m=0.5, easy_margin=True), emb, w, labels)
    assert logits[2, 3] == pytest.approx(S * cos[2, 3], abs=1e-4)  # cos < 0: no margin
    assert logits[0, 0] == pytest.approx(S * math.cos(math.acos(cos[0, 0]) + 0.5), abs=1e-4)


def test_cosface_and_normsoftmax_and_combined_margins():
    emb, w, cos, labels = _fixed_case()
    rows = np.arange(3)
    cosface = _run(CosFace(4, s=S, m=0.35), emb, w, labels)
    expected = S * cos.copy()
    expected[rows, labels] = S * (cos[rows, labels] - 0.35)  # CosFace Eq. 4
    np.testing.assert_allclose(cosface, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(_run(NormSoftmax(4, s=S), emb, w, labels), S * cos, rtol=1e-5, atol=1e-4)
    combined = _run(CombinedMarginHead(4, s=S, m1=1.0, m2=0.3, m3=0.2), emb, w, labels)
    for i in (0, 1):
        y = labels[i]
        assert combined[i, y] == pytest.approx(S * (math.cos(math.acos(cos[i, y]) + 0.3) - 0.2), abs=1e-4)
    # without labels: the margin-free logits
    np.testing.assert_allclose(np.asarray(CosFace(4, s=S)(emb)).shape, (3, 4))


def test_sphereface_psi_is_continuous_and_monotone():
    head = SphereFace(4, s=1.0, m=1.35)
    theta = np.linspace(0.0, math.pi, 2001)
    psi = np.asarray(head.target_cosine(np.cos(theta).astype("float32")))
    assert psi[0] == pytest.approx(1.0, abs=1e-3)
    assert np.all(np.diff(psi) <= 1e-4)  # monotone decreasing in theta
    assert np.max(np.abs(np.diff(psi))) < 0.01  # no jumps
    k = 0  # below pi / 1.35 the psi function is cos(m * theta)
    assert psi[500] == pytest.approx((-1) ** k * math.cos(1.35 * theta[500]), abs=1e-4)


def test_margin_logits_stay_float32_under_mixed_precision():
    emb, w, _, labels = _fixed_case()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        head = ArcFace(4, s=S)
        out = head(emb.astype("float16"), labels)
        assert out.dtype == "float32"
        assert SoftmaxHead(4)(emb.astype("float16")).dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "head",
    [
        CombinedMarginHead(5, s=30.0, m1=1.0, m2=0.3, m3=0.2, name="cm"),
        ArcFace(5, s=30.0, m=0.4, easy_margin=True),
        CosFace(5, s=30.0, m=0.3),
        SphereFace(5, m=1.5),
        NormSoftmax(5, s=20.0),
        SoftmaxHead(5, use_bias=False),
    ],
    ids=lambda h: type(h).__name__,
)
def test_margin_head_config_round_trip(head):
    emb = np.random.default_rng(1).normal(size=(4, 6)).astype("float32")
    labels = np.array([0, 1, 2, 4])
    head.build((None, 6))
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(head))
    assert type(clone) is type(head)
    assert clone.get_config() == head.get_config()
    assert clone.built  # serialize_keras_object keeps the build config
    clone.set_weights(head.get_weights())
    np.testing.assert_allclose(np.asarray(clone(emb, labels)), np.asarray(head(emb, labels)), rtol=1e-6)


def test_get_margin_head_by_name():
    assert isinstance(get_margin_head("arcface", 10, s=32.0, m=0.3), ArcFace)
    assert get_margin_head("cosface", 10).m3 == pytest.approx(0.35)
    assert isinstance(get_margin_head("softmax", 10, name="x"), SoftmaxHead)
    with pytest.raises(ConfigError, match="'large_margin'"):
        get_margin_head("large_margin", 10)
    with pytest.raises(ConfigError, match="arcface"):
        get_margin_head("arcface", 10, m1=2.0)
    with pytest.raises(ConfigError, match="margins"):
        ArcFace(10, m=-0.1)
