"""Closed-set, MegaFace, open-set and cross-model identification (tfface.eval)."""

from __future__ import annotations

import numpy as np
import pytest

import tfface.eval.identification as ident_mod
from tfface.errors import ConfigError, DataError
from tfface.eval import (
    cross_model_matrix,
    exact_search,
    identify,
    megaface_identification,
    tpir_at_fpir,
)


def _at(*degrees: float, scale: float = 1.0) -> np.ndarray:
    """Unit 2-D vectors at the given angles (times ``scale``)."""
    rad = np.deg2rad(degrees)
    return scale * np.stack([np.cos(rad), np.sin(rad)], axis=1)


# Gallery: identity 0 at 0 deg, 1 at 90 deg, 2 at 180 deg.
GALLERY = _at(0, 90, 180, scale=3.0)
GALLERY_LABELS = np.array([0, 1, 2])
# Probes: 10 deg (id 0, rank 1), 50 deg (id 0, but 90 deg is closer: rank 2),
# 100 deg (id 1, rank 1), 170 deg (id 1, but 180 deg is closer: rank 2).
PROBE = _at(10, 50, 100, 170, scale=0.5)
PROBE_LABELS = np.array([0, 0, 1, 1])


def test_rank_accuracy_by_hand():
    res = identify(PROBE, PROBE_LABELS, GALLERY, GALLERY_LABELS, ranks=(1, 2, 3))
    assert res.rank_accuracy == {1: 0.5, 2: 1.0, 3: 1.0}
    np.testing.assert_array_equal(res.cmc, [0.5, 1.0, 1.0])
    np.testing.assert_array_equal(res.search_ranks, [1, 2, 1, 2])
    assert res.to_dict()["rank_accuracy"] == {"1": 0.5, "2": 1.0, "3": 1.0}
    assert (res.num_searches, res.gallery_size, res.num_distractors) == (4, 3, 0)


def test_distractors_lower_rank1():
    distractors = _at(15, 95)
    # 10 deg: 15 (5) beats the mate at 0 (10) -> 2; 50 deg: 15 (35), 90 (40), 95 (45) beat 0 (50) -> 4;
    # 100 deg: 95 (5) beats 90 (10) -> 2; 170 deg: 180 (10), 95 (75) beat 90 (80) -> 3.
    res = identify(PROBE, PROBE_LABELS, GALLERY, GALLERY_LABELS, distractors=distractors, ranks=(1, 2, 3))
    np.testing.assert_array_equal(res.search_ranks, [2, 4, 2, 3])
    assert res.rank_accuracy == {1: 0.0, 2: 0.5, 3: 0.75}
    assert res.num_distractors == 2


def test_tie_with_mate_counts_against_the_probe():
    distractors = _at(0)  # exactly the gallery entry of identity 0
    res = identify(
        PROBE[:1], PROBE_LABELS[:1], GALLERY, GALLERY_LABELS, distractors=distractors, ranks=(1, 2)
    )
    assert res.search_ranks[0] == 2


def test_best_of_several_gallery_entries_and_string_labels():
    gallery = np.r_[GALLERY, _at(45)]
    labels = np.array(["a", "b", "c", "a"])  # identity "a" also enrolled at 45 deg
    res = identify(PROBE, np.array(["a", "a", "b", "b"]), gallery, labels, ranks=(1, 2))
    np.testing.assert_array_equal(res.search_ranks, [1, 1, 1, 2])


def _random_problem(seed: int, n_ids: int = 15, per_id: int = 4, dim: int = 8, n_distractors: int = 40):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    labels = np.repeat(np.arange(n_ids), per_id)
    feats = centres[labels] + 0.9 * rng.normal(size=(labels.size, dim))
    distractors = rng.normal(size=(n_distractors, dim))
    return feats, labels, distractors


def _brute_force_ranks(probe, probe_labels, gallery, gallery_labels, distractors):
    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    p, g, d = unit(probe), unit(gallery), unit(distractors)
    ranks = []
    for i in range(p.shape[0]):
        s_g = g @ p[i]
        s_d = d @ p[i]
        best = s_g[gallery_labels == probe_labels[i]].max()
        others = np.r_[s_g[gallery_labels != probe_labels[i]], s_d]
        ranks.append(1 + int(np.sum(others >= best)))
    return np.array(ranks)


@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_chunked_default_matches_brute_force(chunk):
    feats, labels, distractors = _random_problem(0)
    gallery, probe = feats[::4], np.delete(feats, np.s_[::4], 0)
    g_lab, p_lab = labels[::4], np.delete(labels, np.s_[::4])
    res = identify(probe, p_lab, gallery, g_lab, distractors=distractors, ranks=(1, 5), chunk=chunk)
    expected = _brute_force_ranks(probe, p_lab, gallery, g_lab, distractors)
    np.testing.assert_array_equal(res.search_ranks, expected)
    assert res.rank_accuracy[1] == np.mean(expected <= 1)
    assert 0.0 < res.rank_accuracy[1] < res.rank_accuracy[5] < 1.0  # a case that discriminates


def test_search_callable_is_used():
    feats, labels, distractors = _random_problem(1)
    gallery, probe = feats[::4], np.delete(feats, np.s_[::4], 0)
    g_lab, p_lab = labels[::4], np.delete(labels, np.s_[::4])
    inner = exact_search(np.concatenate([gallery, distractors]))
    calls = []

    def spy(queries, k):
        calls.append((queries.shape, k))
        return inner(queries, k)

    res = identify(probe, p_lab, gallery, g_lab, distractors=distractors, ranks=(1, 5), search=spy)
    assert calls == [((probe.shape[0], 8), 5)]
    default = identify(probe, p_lab, gallery, g_lab, distractors=distractors, ranks=(1, 5))
    np.testing.assert_array_equal(res.cmc, default.cmc)

    def worst_first(queries, k):  # a searcher that returns the k worst entries: no mate found
        scores, idx = exact_search(np.concatenate([gallery, distractors]))(-queries, k)
        return -scores, idx

    res = identify(probe, p_lab, gallery, g_lab, distractors=distractors, ranks=(1, 5), search=worst_first)
    assert res.rank_accuracy[5] < default.rank_accuracy[5]
    assert np.isinf(res.search_ranks).any()


def test_search_bad_output():
    def bad(queries, k):
        return np.zeros((queries.shape[0], k + 1)), np.zeros((queries.shape[0], k + 1), int)

    with pytest.raises(DataError, match="search"):
        identify(PROBE, PROBE_LABELS, GALLERY, GALLERY_LABELS, ranks=(1,), search=bad)


def test_megaface_matches_brute_force_loop():
    feats, labels, distractors = _random_problem(2, n_ids=6, per_id=3, n_distractors=25)
    feats = np.r_[feats, np.ones((1, 8))]  # an identity with one image: no probe
    labels = np.r_[labels, 99]
    res = megaface_identification(feats, labels, distractors, ranks=(1, 3, 10))

    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    d = distractors / np.linalg.norm(distractors, axis=1, keepdims=True)
    ranks = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        for g in members:
            for p in members:
                if p != g:
                    ranks.append(1 + int(np.sum(d @ unit[p] >= unit[g] @ unit[p])))
    ranks = np.array(ranks)
    assert res.num_searches == ranks.size == 6 * 3 * 2
    for r in (1, 3, 10):
        assert res.rank_accuracy[r] == pytest.approx(np.mean(ranks <= r))
    assert 0.0 < res.rank_accuracy[1] < 1.0
    assert res.protocol == "megaface" and res.gallery_size == 1 and res.num_distractors == 25


def test_megaface_scores_distractors_once(monkeypatch):
    feats, labels, distractors = _random_problem(3, n_ids=4, per_id=5, n_distractors=3)
    calls = []
    real = ident_mod._topk_desc

    def counting(queries, database, k, chunk):
        calls.append((queries.shape[0], database.shape[0], k))
        return real(queries, database, k, chunk)

    monkeypatch.setattr(ident_mod, "_topk_desc", counting)
    res = megaface_identification(feats, labels, distractors, ranks=(1, 5))
    assert calls == [(20, 3, 5)]  # one pass: each image against the distractors, top max(ranks)
    assert res.rank_accuracy[5] == 1.0  # only 3 distractors: rank <= 4 always


def test_megaface_errors():
    with pytest.raises(DataError, match="labels"):
        megaface_identification(np.eye(3), [0, 1, 2], np.ones((2, 3)))
    with pytest.raises(DataError, match="distractors"):
        megaface_identification(np.eye(3), [0, 0, 1], np.ones((2, 4)))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"probe": np.full((4, 2), np.nan)}, "probe"),
        ({"gallery": np.r_[GALLERY[:2], [[np.inf, 0]]]}, "gallery"),
        ({"gallery": np.ones((3, 5))}, "gallery"),
        ({"probe": np.ones((4,))}, "probe"),
        ({"gallery": np.ones((0, 2)), "gallery_labels": np.array([], int)}, "gallery"),
        ({"probe_labels": np.array([0, 0, 1])}, "probe_labels"),
        ({"gallery_labels": np.array([0, 1])}, "gallery_labels"),
        ({"probe_labels": np.array([0, 0, 1, 7])}, "probe_labels"),  # 7 not enrolled
        ({"distractors": np.ones((2, 3))}, "distractors"),
        ({"distractors": np.array([[np.nan, 1.0]])}, "distractors"),
    ],
)
def test_identify_bad_input(kwargs, name):
    args = {
        "probe": PROBE,
        "probe_labels": PROBE_LABELS,
        "gallery": GALLERY,
        "gallery_labels": GALLERY_LABELS,
    }
    args.update(kwargs)
    with pytest.raises(DataError, match=name):
        identify(**args)


def test_identify_bad_config():
    with pytest.raises(ConfigError, match="ranks"):
        identify(PROBE, PROBE_LABELS, GALLERY, GALLERY_LABELS, ranks=(0, 1))
    with pytest.raises(ConfigError, match="chunk"):
        identify(PROBE, PROBE_LABELS, GALLERY, GALLERY_LABELS, chunk=0)


def test_tpir_at_fpir_by_hand():
    gallery = _at(0, 90)
    gallery_labels = np.array([0, 1])
    # Mated: 10 deg (mate score cos 10, rank 1), 48 deg (cos 42 = 0.743, rank 1),
    # 80 deg labelled 0 (mate score cos 80 = 0.174, rank 2).
    # Non-mated top scores: 20 -> cos 20 = 0.940, -40 -> 0.766, 45 -> 0.707, 180 -> 0.0.
    probe = _at(10, 48, 80, 20, -40, 45, 180)
    probe_labels = np.array([0, 1, 0, 5, 6, 7, 8])
    res = tpir_at_fpir(probe, probe_labels, gallery, gallery_labels, fpir_targets=(0.1, 0.25, 0.5, 0.75, 1.0))
    assert (res.num_mated, res.num_nonmated) == (3, 4)
    assert res.tpir[0.1] is None  # below 1 / 4 non-mated searches
    assert res.thresholds[0.25] == pytest.approx(np.cos(np.deg2rad(40)))
    assert res.tpir[0.25] == pytest.approx(1 / 3)
    assert res.fpir[0.25] == pytest.approx(0.25)
    assert res.tpir[0.5] == pytest.approx(2 / 3)
    assert res.thresholds[0.75] == pytest.approx(0.0, abs=1e-12)
    assert res.tpir[0.75] == pytest.approx(2 / 3)
    assert res.tpir[1.0] == pytest.approx(2 / 3) and res.thresholds[1.0] == -np.inf
    rank2 = tpir_at_fpir(probe, probe_labels, gallery, gallery_labels, fpir_targets=(0.25, 0.75), rank=2)
    assert rank2.tpir[0.25] == pytest.approx(1 / 3)  # the rank-2 mate scores 0.17 < 0.766
    assert rank2.tpir[0.75] == pytest.approx(1.0)  # ... but > 0.0
    assert res.to_dict()["tpir"]["0.1"] is None


def test_tpir_at_fpir_errors():
    with pytest.raises(DataError, match="probe_labels"):
        tpir_at_fpir(PROBE, PROBE_LABELS, GALLERY, GALLERY_LABELS)  # no non-mated search
    with pytest.raises(DataError, match="gallery"):
        tpir_at_fpir(PROBE, PROBE_LABELS, np.ones((3, 3)), GALLERY_LABELS)
    with pytest.raises(ConfigError, match="fpir_targets"):
        tpir_at_fpir(PROBE, np.array([0, 0, 1, 9]), GALLERY, GALLERY_LABELS, fpir_targets=(2.0,))


def test_cross_model_matrix():
    feats, labels, distractors = _random_problem(4)
    rot = np.linalg.qr(np.random.default_rng(0).normal(size=(8, 8)))[0]
    gallery, probe = feats[::4], np.delete(feats, np.s_[::4], 0)
    g_lab, p_lab = labels[::4], np.delete(labels, np.s_[::4])
    probes = {"new": probe, "old": probe @ rot, "small": probe[:, :4]}
    galleries = {"new": gallery, "old": gallery @ rot, "small": gallery[:, :4]}
    extra = {"new": distractors, "old": distractors @ rot, "small": distractors[:, :4]}
    res = cross_model_matrix(probes, galleries, p_lab, g_lab, distractors=extra)
    assert res.names == res.gallery_names == ["new", "old", "small"]
    expected_diag = identify(probe, p_lab, gallery, g_lab, distractors=distractors, ranks=(1,)).rank_accuracy[
        1
    ]
    assert res.matrix[0, 0] == expected_diag
    assert res.matrix[1, 1] == pytest.approx(expected_diag)  # a rotation keeps cosines
    assert res.matrix[0, 1] < expected_diag  # incompatible spaces
    assert np.isnan(res.matrix[0, 2]) and np.isnan(res.matrix[2, 1])
    assert not np.isnan(res.matrix[2, 2])
    assert res.to_dict()["matrix"][0][2] is None
    md = res.to_markdown()
    assert "n/a" in md and f"{100 * expected_diag:.2f}" in md and md.count("\n") == 5


def test_cross_model_errors():
    with pytest.raises(DataError, match="distractors"):
        cross_model_matrix(
            {"a": PROBE},
            {"a": GALLERY, "b": GALLERY},
            PROBE_LABELS,
            GALLERY_LABELS,
            distractors={"a": np.ones((2, 2))},
        )
    with pytest.raises(DataError, match=r"probe_features\['a'\]"):
        cross_model_matrix({"a": PROBE[:3]}, {"a": GALLERY}, PROBE_LABELS, GALLERY_LABELS)
    with pytest.raises(DataError, match=r"gallery_features\['b'\]"):
        cross_model_matrix({"a": PROBE}, {"b": np.full((3, 2), np.nan)}, PROBE_LABELS, GALLERY_LABELS)
    with pytest.raises(DataError, match="probe_features"):
        cross_model_matrix({}, {"a": GALLERY}, PROBE_LABELS, GALLERY_LABELS)
