"""Verification metrics (tfface.eval.verification) and pair sampling (tfface.eval.pairs)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from tfface.errors import ConfigError, DataError
from tfface.eval import make_pairs, roc_curve, verification, verification_scores


def _random_scores(seed: int, n: int = 400, decimals: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Noisy scores rounded so that many of them tie."""
    rng = np.random.default_rng(seed)
    issame = rng.random(n) < 0.4
    scores = np.round(rng.normal(size=n) + 1.5 * issame, decimals)
    return scores, issame


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("drop_intermediate", [True, False])
def test_roc_matches_sklearn_with_ties(seed, drop_intermediate):
    scores, issame = _random_scores(seed)
    assert np.unique(scores).size < scores.size / 4  # heavy ties
    ours = roc_curve(scores, issame, drop_intermediate=drop_intermediate)
    ref = sk_roc_curve(issame, scores, drop_intermediate=drop_intermediate)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_result_roc_auc_and_tar_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    issame = np.r_[np.ones(300, bool), np.zeros(3000, bool)]
    scores = np.round(rng.normal(size=issame.size) + 2.0 * issame, 2)
    res = verification_scores(scores, issame, far_targets=(0.5, 0.1, 0.01, 3e-3, 1e-3, 1e-4))
    fpr, tpr, thr = sk_roc_curve(issame, scores)
    np.testing.assert_array_equal(res.fpr, fpr)
    np.testing.assert_array_equal(res.tpr, tpr)
    np.testing.assert_array_equal(res.thresholds, thr)
    assert res.auc == pytest.approx(roc_auc_score(issame, scores), rel=1e-12)
    full_fpr, full_tpr, _ = sk_roc_curve(issame, scores, drop_intermediate=False)
    for far in (0.5, 0.1, 0.01, 3e-3, 1e-3):
        assert res.tar_at_far[far] == pytest.approx(full_tpr[full_fpr <= far].max(), abs=0)
    assert res.tar_at_far[1e-4] is None  # 1e-4 < 1 / 3000 negatives
    assert (res.num_positive, res.num_negative) == (300, 3000)


def test_tar_at_far_undefined_with_few_negatives():
    scores, issame = _random_scores(3, n=120)
    n_neg = int((~issame).sum())
    assert 10 < n_neg < 100
    res = verification_scores(scores, issame)
    assert res.tar_at_far[1e-6] is None
    assert res.tar_at_far[1e-2] is None  # still below 1 / n_neg
    assert res.threshold_at_far[1e-6] is None
    fpr, tpr, _ = sk_roc_curve(issame, scores, drop_intermediate=False)
    assert res.tar_at_far[1e-1] == tpr[fpr <= 0.1].max()
    assert res.to_dict()["tar_at_far"]["1e-06"] is None


def test_tar_uses_full_roc_not_dropped_points():
    # Full ROC (0,0) (1/3,1/3) (2/3,2/3) (1,1): sklearn's default drops the collinear (2/3, 2/3),
    # but TAR at FAR 2/3 is still the 2/3 reached at threshold 0.5.
    scores = np.array([0.9, 0.9, 0.5, 0.5, 0.1, 0.1])
    issame = np.array([1, 0, 1, 0, 1, 0])
    fpr, _, _ = sk_roc_curve(issame, scores)
    assert not np.isclose(fpr, 2 / 3).any()
    res = verification_scores(scores, issame, n_folds=2, far_targets=(0.7,))
    assert res.tar_at_far[0.7] == pytest.approx(2 / 3)
    assert res.threshold_at_far[0.7] == 0.5
    scores = np.array([0.9, 0.6, 0.5, 0.1])
    issame = np.array([False, True, False, True])
    res = verification_scores(scores, issame, n_folds=2, far_targets=(0.5,))
    assert res.tar_at_far[0.5] == 0.5  # threshold 0.6: one of two negatives accepted, one positive


def test_perfect_separation():
    rng = np.random.default_rng(0)
    issame = rng.random(600) < 0.5
    scores = np.where(issame, rng.uniform(0.5, 1.0, 600), rng.uniform(-1.0, 0.4, 600))
    res = verification_scores(scores, issame)
    assert res.accuracy == 1.0 and res.accuracy_std == 0.0
    assert res.eer == 0.0
    assert res.auc == 1.0
    assert res.tar_at_far[1e-1] == 1.0 and res.tar_at_far[1e-2] == 1.0
    assert res.tar_at_far[1e-3] is None


def test_two_fold_accuracy_by_hand():
    # fold A = first 8 pairs, fold B = last 8 (contiguous folds, no shuffling).
    # On B the unique best threshold is the midpoint 0.65 (7/8), on A it is 0.63 (7/8).
    # 0.65 applied to A: 6/8 correct; 0.63 applied to B: 7/8 correct.
    scores = np.r_[0.66, 0.64, 0.9, 0.95, 0.2, 0.62, 0.7, 0.1, 0.9, 0.8, 0.7, 0.3, 0.6, 0.5, 0.1, 0.0]
    issame = np.r_[1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    res = verification_scores(scores, issame, n_folds=2)
    np.testing.assert_allclose(res.fold_thresholds, [0.65, 0.63])
    np.testing.assert_allclose(res.fold_accuracies, [0.75, 0.875])
    assert res.accuracy == pytest.approx(0.8125)
    assert res.accuracy_std == pytest.approx(0.0625)


def test_ten_fold_accuracy_known_case():
    # 100 pairs, positives score 1, negatives 0, except pair 5 (in fold 0): a positive at -1.
    issame = np.tile([True, False], 50)
    scores = np.where(issame, 1.0, 0.0)
    scores[4] = -1.0
    res = verification_scores(scores, issame)
    np.testing.assert_allclose(res.fold_thresholds, 0.5)
    np.testing.assert_allclose(res.fold_accuracies, [0.9] + [1.0] * 9)
    assert res.accuracy == pytest.approx(0.99)
    assert res.accuracy_std == pytest.approx(np.std([0.9] + [1.0] * 9))


def _reference_fold_accuracy(scores, issame, n_folds):
    """Plain loop: every midpoint candidate, the first best from the highest threshold down."""
    folds = np.array_split(np.arange(scores.size), n_folds)
    accs = []
    for test in folds:
        train = np.setdiff1d(np.arange(scores.size), test)
        u = np.unique(scores[train])[::-1]
        candidates = [np.inf] + [(a + b) / 2 for a, b in zip(u[:-1], u[1:], strict=True)] + [-np.inf]
        best_t, best_acc = None, -1.0
        for t in candidates:
            acc = np.mean((scores[train] >= t) == issame[train])
            if acc > best_acc:
                best_t, best_acc = t, acc
        accs.append(np.mean((scores[test] >= best_t) == issame[test]))
    return np.array(accs)


@pytest.mark.parametrize("seed", [0, 4])
def test_fold_accuracy_matches_plain_loop(seed):
    scores, issame = _random_scores(seed, n=200, decimals=1)
    res = verification_scores(scores, issame)
    np.testing.assert_allclose(res.fold_accuracies, _reference_fold_accuracy(scores, issame, 10))


def test_fixed_threshold_grid():
    scores, issame = _random_scores(5, n=200, decimals=3)
    grid = np.arange(-1.0, 3.0, 0.25)
    res = verification_scores(scores, issame, thresholds=grid)
    assert np.isin(res.fold_thresholds, grid).all()


def test_eer_by_hand():
    # ROC passes through FPR = FNR = 1/3 at threshold 0.7.
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1])
    issame = np.array([1, 1, 1, 0, 0, 0])
    res = verification_scores(scores, issame, n_folds=2)
    assert res.eer == pytest.approx(1 / 3)


def test_verification_normalises_embeddings():
    rng = np.random.default_rng(0)
    e1 = rng.normal(size=(60, 8))
    e2 = e1 + rng.normal(scale=1.0, size=(60, 8))
    issame = np.arange(60) % 2 == 0
    e2[~issame] = rng.normal(size=(30, 8))
    a = verification(e1, e2, issame, n_folds=5)
    b = verification(7.0 * e1, 0.1 * e2, issame, n_folds=5)
    cos = np.sum(e1 * e2, 1) / np.linalg.norm(e1, axis=1) / np.linalg.norm(e2, axis=1)
    c = verification_scores(cos, issame, n_folds=5)
    assert a.accuracy == b.accuracy == c.accuracy
    assert a.auc == pytest.approx(c.auc) and a.auc == pytest.approx(b.auc)


@pytest.mark.parametrize(
    ("emb1", "emb2", "issame", "name"),
    [
        (np.full((4, 3), np.nan), np.ones((4, 3)), [1, 0, 1, 0], "emb1"),
        (np.ones((4, 3)), np.array([[1, 2, np.inf]] * 4), [1, 0, 1, 0], "emb2"),
        (np.ones((4, 3)), np.ones((4, 3, 1)), [1, 0, 1, 0], "emb2"),
        (np.ones((4, 3)), np.ones((4, 5)), [1, 0, 1, 0], "emb2"),
        (np.ones((4, 3)), np.ones((3, 3)), [1, 0, 1], "emb2"),
        (np.ones((0, 3)), np.ones((0, 3)), [], "emb1"),
        (np.ones((4, 3)), np.ones((4, 3)), [1, 0, 1], "issame"),
        (np.ones((4, 3)), np.ones((4, 3)), [1, 0, 2, 0], "issame"),
        (np.ones((4, 3)), np.ones((4, 3)), [1, 1, 1, 1], "issame"),
        (np.ones((4, 3)), np.r_[np.zeros((1, 3)), np.ones((3, 3))], [1, 0, 1, 0], "emb2"),
    ],
)
def test_verification_bad_input(emb1, emb2, issame, name):
    with pytest.raises(DataError, match=name):
        verification(emb1, emb2, issame, n_folds=2)


def test_verification_scores_bad_input():
    with pytest.raises(DataError, match="scores"):
        verification_scores([0.1, np.nan, 0.3, 0.2], [1, 0, 1, 0], n_folds=2)
    with pytest.raises(DataError, match=r"scores.*\(3,\)"):
        verification_scores([0.1, 0.2, 0.3], [1, 0, 1])  # fewer pairs than folds
    with pytest.raises(DataError, match=r"scores.*\(2, 2\)"):
        verification_scores(np.ones((2, 2)), [1, 0])
    with pytest.raises(ConfigError, match="n_folds"):
        verification_scores([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0], n_folds=1)
    with pytest.raises(ConfigError, match="far_targets"):
        verification_scores([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0], n_folds=2, far_targets=(0.0,))


def test_make_pairs_deterministic_and_valid():
    labels = np.repeat(np.arange(20), np.arange(1, 21) % 4 + 2)
    i1, i2, same = make_pairs(labels, 60, 80, seed=3)
    j1, j2, same2 = make_pairs(labels, 60, 80, seed=3)
    np.testing.assert_array_equal(i1, j1)
    np.testing.assert_array_equal(i2, j2)
    np.testing.assert_array_equal(same, same2)
    k1, _, _ = make_pairs(labels, 60, 80, seed=4)
    assert not np.array_equal(i1, k1)
    assert int(same.sum()) == 60 and int((~same).sum()) == 80
    assert (i1 != i2).all()
    np.testing.assert_array_equal(labels[i1] == labels[i2], same)
    assert np.unique(i1 * labels.size + i2).size == i1.size  # no repeated pair
    assert same[:60].mean() < 1.0  # shuffled: contiguous folds hold both kinds


def test_make_pairs_all_positive_pairs():
    labels = np.array([0, 0, 0, 1, 1, 2])
    i1, i2, same = make_pairs(labels, 4, 0, seed=0)  # C(3,2) + C(2,2) = 4: every positive pair
    assert same.all()
    assert sorted(zip(i1.tolist(), i2.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 2), (3, 4)]


def test_make_pairs_errors():
    with pytest.raises(DataError, match="labels"):
        make_pairs(np.arange(10), 1, 5, seed=0)  # every identity has one image
    with pytest.raises(DataError, match="labels"):
        make_pairs(np.array([0, 0, 1, 1]), 3, 0, seed=0)  # only 2 positive pairs exist
    with pytest.raises(DataError, match="labels"):
        make_pairs(np.zeros(5, int), 0, 1, seed=0)  # a single identity has no negative pair
    with pytest.raises(DataError, match=r"labels.*\(2, 2\)"):
        make_pairs(np.zeros((2, 2)), 1, 1, seed=0)
    with pytest.raises(ConfigError, match="n_positive"):
        make_pairs(np.array([0, 0, 1]), -1, 1, seed=0)
