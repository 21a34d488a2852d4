"""DDL loss pieces: soft histograms, divergences, hard negatives, order loss, teacher gradients, config checks."""

import numpy as np
import pytest
import tensorflow as tf

from tfface.errors import ConfigError
from tfface.losses.ddl import (
    DDLBranch,
    DDLLossConfig,
    DistributionDistillationLoss,
    emd_1d,
    histogram_nodes,
    js_divergence,
    kl_divergence,
    negative_similarities,
    order_loss,
    positive_similarities,
    soft_histogram,
)


def _branch(rng, b=8, d=16, noise=0.3):
    e = rng.normal(size=(3, b, d)).astype("float32")
    return DDLBranch(tf.constant(e[0]), tf.constant(e[1]), tf.constant(e[1] + noise * e[2]))


def test_soft_histogram_sums_to_one_and_is_differentiable():
    nodes = histogram_nodes(2001)
    assert nodes.shape == (2001,) and float(nodes[0]) == -1.0 and float(nodes[-1]) == 1.0
    s = tf.Variable([0.1, 0.5, -0.3, 0.9])
    target = soft_histogram(tf.constant([0.6, 0.7, 0.8, 0.9]), nodes, 50.0)
    with tf.GradientTape() as tape:
        h = soft_histogram(s, nodes, 50.0)
        d = kl_divergence(target, h)
    assert abs(float(tf.reduce_sum(h)) - 1.0) < 1e-5
    g = tape.gradient(d, s).numpy()
    assert np.isfinite(g).all() and np.abs(g).max() > 0
    # the mode sits at the sample for one sample; masked samples add nothing
    one = soft_histogram(tf.constant([0.3, -0.8]), nodes, 50.0, weights=tf.constant([1.0, 0.0])).numpy()
    assert abs(nodes.numpy()[one.argmax()] - 0.3) < 1e-3


def test_divergences_zero_for_identical_and_positive_otherwise():
    nodes = histogram_nodes(201)
    p = soft_histogram(tf.constant([0.2, 0.4, 0.5]), nodes, 50.0)
    q = soft_histogram(tf.constant([-0.2, 0.0, 0.1]), nodes, 50.0)
    for fn in (kl_divergence, js_divergence, lambda a, b: emd_1d(a, b, 0.01)):
        assert abs(float(fn(p, p))) < 1e-6
        assert float(fn(p, q)) > 1e-3
    # 1-D EMD of two shifted bumps is about the shift
    assert abs(float(emd_1d(p, soft_histogram(tf.constant([0.0, 0.2, 0.3]), nodes, 50.0), 0.01)) - 0.2) < 0.01


def test_hard_negatives_are_row_maxima_without_the_diagonal(rng):
    e = rng.normal(size=(6, 8)).astype("float32")
    x = e / np.linalg.norm(e, axis=1, keepdims=True)
    g = x @ x.T
    np.fill_diagonal(g, -np.inf)
    np.testing.assert_allclose(negative_similarities(tf.constant(e), "hard").numpy(), g.max(1), atol=1e-5)
    r = negative_similarities(tf.constant(e), "random", seed=tf.constant([1, 2])).numpy()
    assert (r <= g.max(1) + 1e-6).all() and not np.allclose(r, g.max(1))
    # positives at or below 0 are masked (Sec. 3.1)
    s, keep = positive_similarities(tf.constant([[1.0, 0.0], [1.0, 0.0]]), tf.constant([[1.0, 0.1], [-1.0, 0.2]]))
    assert keep.numpy().tolist() == [1.0, 0.0] and s.numpy()[0] > 0.99


def test_order_loss_pushes_positives_above_negatives():
    pos = [tf.Variable(0.3), tf.Variable(0.1)]
    neg = [tf.Variable(0.2), tf.Variable(0.25)]
    with tf.GradientTape() as tape:
        loss = order_loss(pos, neg)
    grads = tape.gradient(loss, pos + neg)
    # (K+1)^2 = 4 terms: each positive mean appears twice with sign -, each negative mean twice with +
    assert [float(g) for g in grads] == [-2.0, -2.0, 2.0, 2.0]
    assert float(order_loss([0.9], [0.0])) < float(order_loss([0.3], [0.2]))


def test_ddl_loss_parts_teacher_gradient_and_ablations(rng):
    teacher, s1, s2 = _branch(rng, noise=0.2), _branch(rng, noise=1.0), _branch(rng, noise=2.0)
    base = DistributionDistillationLoss(bins=201)
    total, parts = base(teacher, [s1, s2])
    c = base.config
    expected = c.lambda_1 * parts["kl_pos"] + c.lambda_2 * parts["kl_neg"] + c.lambda_3 * parts["order"]
    assert abs(float(total - expected)) < 1e-5 and float(parts["kl_pos"]) > 0
    assert {"teacher_pos_mean", "student_2_overlap"} <= set(parts)
    # identical teacher and student: no divergence
    _, same = base(teacher, [teacher])
    assert abs(float(same["kl_pos"])) < 1e-5 and abs(float(same["kl_neg"])) < 1e-5
    # the teacher histogram receives gradients unless stop_teacher_grad
    for stop, expect_grad in ((False, True), (True, False)):
        loss = DistributionDistillationLoss(bins=201, lambda_3=0.0, stop_teacher_grad=stop)
        ta = tf.Variable(teacher.pair_a)
        with tf.GradientTape() as tape:
            v, _ = loss(DDLBranch(teacher.identities, ta, teacher.pair_b), [s1])
        g = tape.gradient(v, ta)
        assert (g is not None and float(tf.reduce_max(tf.abs(g))) > 0) == expect_grad
    # Table 2 switches all run and change the value
    values = {float(total)}
    for kw in ({"distance": "js"}, {"distance": "emd"}, {"negative_mining": "random"}, {"students": "mixture"},
               {"lambda_3": 0.0}, {"lambda_1": 0.0, "lambda_2": 0.0}):
        v, p = DistributionDistillationLoss(bins=201, **kw)(teacher, [s1, s2], seed=tf.constant([3, 4]))
        assert np.isfinite(float(v))
        values.add(round(float(v), 6))
        if kw.get("students") == "mixture":
            assert "student_1_pos_mean" in p and "student_2_pos_mean" not in p
    assert len(values) == 7


@pytest.mark.parametrize("field,value", [("bins", 1), ("bins", 0), ("bins", 2.5), ("lambda_1", -0.1),
                                         ("lambda_2", float("nan")), ("lambda_3", -1.0), ("gamma", 0.0),
                                         ("node_range", (0.5, 0.2)), ("node_range", (-2.0, 1.0)),
                                         ("distance", "l2"), ("negative_mining", "semi"), ("students", "all"),
                                         ("positive_threshold", 1.5)])
def test_config_out_of_range_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        DDLLossConfig(**{field: value})
