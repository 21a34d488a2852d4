"""The recognizer benchmark's protocol, checked with an oracle that knows every identity and a blind model."""

import numpy as np
import pytest

from tfface.embed import Embedder
from tfface.experiments.bench_recognizers import SMALL, evaluate_recognizer, held_out_sets, to_markdown


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    from tfface.data.builtin import render_dataset  # noqa: F401 (the cache folder is read per call)

    mp = pytest.MonkeyPatch()
    mp.setenv("TFFACE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield held_out_sets(SMALL, progress=False)
    mp.undo()


def _oracle(sets):
    """Embeds each rendered image as the one-hot of its person: (world seed, identity), by its pixels.
    (The seed is part of who a face is: the same identity index under another seed is someone else.)"""
    table = {}
    for s in sets.values():
        for img, ident in zip(s.images, s.identities, strict=True):
            table[img.tobytes()] = (s.config.seed, int(ident))
    ids = sorted(set(table.values()))
    col = {i: k for k, i in enumerate(ids)}
    prep = Embedder.from_callable(lambda x: x, "tfface64").preprocessing

    def fn(batch):
        out = np.zeros((len(batch), len(ids)), np.float32)
        for r, img in enumerate(batch):
            raw = np.clip(np.rint((img + 1.0) * 127.5), 0, 255).astype(np.uint8)  # undo tfface64
            out[r, col[table[raw.tobytes()]]] = 1.0
        return out

    return Embedder.from_callable(fn, prep, dim=len(ids), name="oracle")


def test_an_oracle_scores_perfectly_on_every_part_of_the_protocol(sets):
    m = evaluate_recognizer(_oracle(sets), sets, SMALL)
    assert all(v == 1.0 for v in m["rank1"].values()), m["rank1"]
    assert m["tar_at_far"]["0.001"] == 1.0 and m["verification_10fold"]["accuracy"] == 1.0
    for factor, rows in m["sweep"].items():
        assert rows and all(r["rank1"] == 1.0 for r in rows.values()), (factor, rows)
    assert m["pairs_all"]["genuine"] == SMALL.test_identities * 3  # 20 identities x C(3, 2)
    test = sets["test"]
    for name in ("sweep", "sketch"):  # the same people as the test set, never its gallery image
        assert {(s.config.seed, i) for s in (sets[name],) for i in s.identities} == {
            (test.config.seed, i) for i in test.identities}
        gallery = {img.tobytes() for img in test.images[np.r_[0, np.flatnonzero(np.diff(test.labels)) + 1]]}
        assert not gallery & {img.tobytes() for img in sets[name].images}


def test_a_blind_model_scores_at_chance(sets):
    rng = np.random.default_rng(0)
    blind = Embedder.from_callable(lambda x: rng.normal(size=(len(x), 32)), "tfface64", dim=32, name="blind")
    m = evaluate_recognizer(blind, sets, SMALL)
    assert m["rank1"]["200"] < 0.15 and m["verification_10fold"]["accuracy"] < 0.7
    md = to_markdown({"config": {"distractors": list(SMALL.distractors), "far_targets": list(SMALL.far_targets)},
                      "models": {"blind": m}})
    assert "| blind |" in md and "sketch" in md
