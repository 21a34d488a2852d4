"""Pair-similarity distributions and histogram intersection (tfface.eval.distributions)."""

from __future__ import annotations

import numpy as np
import pytest

from tfface.errors import ConfigError, DataError
from tfface.eval import histogram_intersection, similarity_distributions


def test_histogram_intersection_known_values():
    h = np.array([0.2, 0.5, 0.3])
    assert histogram_intersection(h, h) == pytest.approx(1.0)
    assert histogram_intersection([1, 1, 0, 0], [0, 0, 2, 5]) == 0.0
    assert histogram_intersection([1, 1, 0], [0, 1, 1]) == pytest.approx(0.5)
    assert histogram_intersection([2, 6, 2], [1, 3, 1]) == pytest.approx(1.0)  # counts are normalised


def test_histogram_intersection_errors():
    with pytest.raises(DataError, match=r"h2.*\(4,\)"):
        histogram_intersection([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(DataError, match="h1"):
        histogram_intersection([1, -1, 3], [1, 2, 3])
    with pytest.raises(DataError, match="h2"):
        histogram_intersection([1, 2, 3], [0, 0, 0])
    with pytest.raises(DataError, match="h1"):
        histogram_intersection([np.nan, 1, 1], [1, 1, 1])


def _clusters(seed: int = 0, n_ids: int = 4, per_id: int = 3, dim: int = 6):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_ids), per_id)
    feats = rng.normal(size=(n_ids, dim))[labels] + 0.7 * rng.normal(size=(labels.size, dim))
    return feats, labels


def test_all_pairs_match_brute_force():
    feats, labels = _clusters()
    st = similarity_distributions(feats, labels, n_bins=20)
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    i, j = np.triu_indices(labels.size, 1)
    cos = np.sum(unit[i] * unit[j], axis=1)
    same = labels[i] == labels[j]
    np.testing.assert_allclose(np.sort(st.positive_scores), np.sort(cos[same]))
    np.testing.assert_allclose(np.sort(st.negative_scores), np.sort(cos[~same]))
    assert (st.num_positive, st.num_negative, st.negatives_sampled) == (12, 54, False)
    assert st.positive_hist.sum() == pytest.approx(1.0) and st.negative_hist.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(st.positive_hist, np.histogram(cos[same], bins=20, range=(-1, 1))[0] / 12)
    assert st.margin == pytest.approx(cos[same].mean() - cos[~same].mean())
    assert st.positive_std == pytest.approx(cos[same].std())
    assert st.overlap == pytest.approx(histogram_intersection(st.positive_hist, st.negative_hist))
    assert 0.0 < st.overlap < 1.0
    assert st.to_dict()["num_negative"] == 54 and len(st.to_dict()["bin_edges"]) == 21


def test_negatives_are_sampled_deterministically():
    feats, labels = _clusters(1, n_ids=10, per_id=4)
    a = similarity_distributions(feats, labels, max_negatives=50, seed=3)
    b = similarity_distributions(feats, labels, max_negatives=50, seed=3)
    c = similarity_distributions(feats, labels, max_negatives=50, seed=4)
    assert a.negatives_sampled and a.num_negative == 50 and a.num_positive == 60
    np.testing.assert_array_equal(a.negative_scores, b.negative_scores)
    assert not np.array_equal(np.sort(a.negative_scores), np.sort(c.negative_scores))


def test_separated_identities_have_no_overlap():
    feats = np.array([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [-3.0, 0.0]])
    st = similarity_distributions(feats, [0, 0, 1, 1], n_bins=10)
    assert st.overlap == 0.0
    assert st.margin == pytest.approx(2.0)
    assert st.positive_hist[-1] == 1.0 and st.negative_hist[0] == 1.0  # cos 1 and -1 land in the end bins


@pytest.mark.parametrize(
    ("features", "labels", "name"),
    [
        (np.array([[1.0, np.nan], [1, 1], [0, 1]]), [0, 0, 1], "features"),
        (np.ones((3,)), [0, 0, 1], "features"),
        (np.ones((0, 2)), [], "features"),
        (np.ones((3, 2)), [0, 0], "labels"),
        (np.ones((3, 2)), [0, 0, 0], "labels"),  # one identity: no negative pair
        (np.ones((3, 2)), [0, 1, 2], "labels"),  # no positive pair
    ],
)
def test_bad_input(features, labels, name):
    with pytest.raises(DataError, match=name):
        similarity_distributions(features, labels)


def test_bad_config():
    with pytest.raises(ConfigError, match="n_bins"):
        similarity_distributions(np.eye(3), [0, 0, 1], n_bins=0)
    with pytest.raises(ConfigError, match="max_negatives"):
        similarity_distributions(np.eye(3), [0, 0, 1], max_negatives=-5)
