"""tf.data pipelines: preprocessing, shapes, determinism, augmentation, P x K batches, strategies."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfface.data.pipeline import augment_batch, identity_balanced_batches, make_dataset, preprocess
from tfface.errors import ConfigError, DataError


def _images(n: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _epoch(ds) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_preprocess_values():
    x = tf.constant([[0, 127.5, 255.0]])
    np.testing.assert_allclose(preprocess(x, "arcface").numpy(), [[-1.0, 0.0, 1.0]], atol=1e-6)
    px = np.array([[[10, 128, 250]]], np.uint8)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(preprocess(px, "imagenet").numpy(), (px / 255 - mean) / std, rtol=1e-5)
    assert preprocess(px).dtype == tf.float32
    with pytest.raises(ConfigError, match="unknown 'bgr'"):
        preprocess(px, "bgr")


def test_eval_dataset_keeps_order_and_last_batch():
    images, labels = _images(10), np.arange(10) % 3
    batches = _epoch(make_dataset(images, labels, batch_size=4))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (10, 8, 8, 3)
    np.testing.assert_allclose(x, images / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(y, labels)
    resized = _epoch(make_dataset(images, labels, batch_size=4, image_size=(4, 6)))
    assert resized[0][0].shape == (4, 4, 6, 3)


def test_training_dataset_shapes_permutation_and_seed():
    images, labels = _images(10), np.arange(10)
    ds = make_dataset(images, labels, batch_size=4, training=True, seed=3)
    assert ds.element_spec[0].shape.as_list() == [4, 8, 8, 3]  # static: drop_remainder
    assert ds.element_spec[1].dtype == tf.int64
    assert ds.options().deterministic is True
    assert int(ds.cardinality()) == 2  # known: Keras sizes the epoch from it
    first, second = _epoch(ds), _epoch(ds)
    assert len(first) == 2 and all(x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1 for x, _ in first)
    for epoch in (first, second):
        seen = np.concatenate([y for _, y in epoch])
        assert len(set(seen.tolist())) == 8  # 8 distinct images of the 10, no repeats
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, second, strict=True))  # reshuffled
    again = _epoch(make_dataset(images, labels, batch_size=4, training=True, seed=3))
    for (xa, ya), (xb, yb) in zip(first, again, strict=True):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)
    other = _epoch(make_dataset(images, labels, batch_size=4, training=True, seed=4))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
    plain = _epoch(make_dataset(images, labels, batch_size=4, training=True, seed=3, augment=False))
    for x, y in plain:  # no augmentation: exactly the preprocessed images of those labels
        np.testing.assert_allclose(x, images[y] / 127.5 - 1.0, atol=1e-6)


def test_augment_batch_is_flip_plus_reflected_shift():
    images = _images(16, size=8, seed=1).astype(np.float32)
    seed = tf.constant([5, 7], tf.int64)
    out = augment_batch(images, seed, max_shift=0.25, brightness=0.0, contrast=(1.0, 1.0)).numpy()
    np.testing.assert_array_equal(out, augment_batch(images, seed, 0.25, 0.0, (1.0, 1.0)).numpy())
    moved = 0
    for im, got in zip(images, out, strict=True):
        matches = []
        for src in (im, im[:, ::-1]):
            padded = np.pad(src, ((2, 2), (2, 2), (0, 0)), mode="symmetric")
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    if np.array_equal(got, padded[2 - dy : 10 - dy, 2 - dx : 10 - dx]):
                        matches.append((dy, dx))
        assert matches, "output is not a flipped/shifted copy of its input"
        moved += (0, 0) not in matches
    assert moved > 0
    bright = augment_batch(images, seed).numpy()
    assert bright.min() >= 0 and bright.max() <= 255 and not np.array_equal(bright, out)


def test_paths_are_decoded_like_arrays(tmp_path):
    images, labels = _images(5, seed=2), np.array([0, 0, 1, 1, 2])
    paths = []
    for i, im in enumerate(images):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    from_paths = _epoch(make_dataset(paths, labels, batch_size=2))
    from_array = _epoch(make_dataset(images, labels, batch_size=2))
    for (xa, ya), (xb, yb) in zip(from_paths, from_array, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    train = make_dataset(paths, labels, batch_size=2, training=True, image_size=4)
    assert train.element_spec[0].shape.as_list() == [2, 4, 4, 3]
    assert len(_epoch(train)) == int(train.cardinality()) == 2

    Image.fromarray(_images(1, size=6)[0]).save(tmp_path / "odd.png")
    ds = make_dataset([*paths, tmp_path / "odd.png"], [*labels, 3], batch_size=6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="odd.png"):
        _epoch(ds)
    with pytest.raises(DataError, match="gone.png"):
        make_dataset([*paths, tmp_path / "gone.png"], [*labels, 3], batch_size=2)
    Image.fromarray(images[0, :, :, 0]).save(tmp_path / "grey.pgm")
    with pytest.raises(DataError, match="grey.pgm"):
        make_dataset([tmp_path / "grey.pgm"], [0], batch_size=1)


def test_identity_balanced_batches():
    labels = np.repeat([7, 3, 5, 9, 1], [5, 1, 3, 4, 2])
    batches = identity_balanced_batches(labels, p=3, k=2, seed=0, num_batches=40)
    assert batches.shape == (40, 6) and batches.dtype == np.int64
    single = int(np.flatnonzero(labels == 3)[0])
    for b in batches:
        groups = labels[b].reshape(3, 2)
        assert (groups == groups[:, :1]).all()  # K consecutive images of one identity
        assert len(set(groups[:, 0].tolist())) == 3  # P distinct identities
        for pair in b.reshape(3, 2):
            if labels[pair[0]] == 3:
                assert pair.tolist() == [single, single]  # 1 image < K: with replacement
            else:
                assert pair[0] != pair[1]  # enough images: distinct
    assert {int(x) for x in labels[batches[:, ::2]].ravel()} == {1, 3, 5, 7, 9}
    np.testing.assert_array_equal(batches, identity_balanced_batches(labels, 3, 2, seed=0, num_batches=40))
    assert not np.array_equal(batches, identity_balanced_batches(labels, 3, 2, seed=1, num_batches=40))
    assert identity_balanced_batches(labels, 2, 3).shape == (2, 6)  # one epoch: 15 // 6
    with pytest.raises(DataError, match="5 identities, fewer than P=6"):
        identity_balanced_batches(labels, 6, 2)


def test_make_dataset_pk_batches():
    labels = np.repeat(np.arange(6), [4, 4, 3, 2, 5, 6])
    images = _images(len(labels))
    ds = make_dataset(images, labels, batch_size=6, training=True, pk=(2, 3), seed=1, augment=False)
    epoch = _epoch(ds)
    assert len(epoch) == int(ds.cardinality()) == len(labels) // 6
    for x, y in epoch:
        ids, counts = np.unique(y, return_counts=True)
        assert len(ids) == 2 and counts.tolist() == [3, 3]
        assert x.shape == (6, 8, 8, 3)
    again = _epoch(make_dataset(images, labels, batch_size=6, training=True, pk=(2, 3), seed=1, augment=False))
    for (xa, ya), (xb, yb) in zip(epoch, again, strict=True):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)
    with pytest.raises(ConfigError, match="2 x 3 must equal batch_size 4"):
        make_dataset(images, labels, batch_size=4, training=True, pk=(2, 3))
    with pytest.raises(ConfigError, match="training only"):
        make_dataset(images, labels, batch_size=6, pk=(2, 3))


def test_global_batch_under_strategy(two_cpu_strategy):
    images, labels = _images(10), np.arange(10)
    ds = make_dataset(images, labels, batch_size=4, training=True, strategy=two_cpu_strategy)
    dist = two_cpu_strategy.experimental_distribute_dataset(ds)
    x, y = next(iter(dist))
    shapes = [t.shape.as_list() for t in two_cpu_strategy.experimental_local_results(x)]
    assert shapes == [[2, 8, 8, 3], [2, 8, 8, 3]]
    with pytest.raises(ConfigError, match="global batch 3 does not divide over 2 replicas"):
        make_dataset(images, labels, batch_size=3, training=True, strategy=two_cpu_strategy)


def test_make_dataset_bad_inputs():
    images = _images(4)
    with pytest.raises(DataError, match="larger than the 4 training images"):
        make_dataset(images, np.arange(4), batch_size=8, training=True)
    with pytest.raises(DataError, match=r"uint8 \(N, H, W, 3\).*\(4, 8, 8\)"):
        make_dataset(images[..., 0], np.arange(4), batch_size=2)
    with pytest.raises(DataError, match="matching 3 labels"):
        make_dataset(images, np.arange(3), batch_size=2)
    with pytest.raises(DataError, match="integer"):
        make_dataset(images, np.linspace(0, 1, 4), batch_size=2)
    with pytest.raises(ConfigError, match="unknown 'nope'"):
        make_dataset(images, np.arange(4), batch_size=2, preprocessing="nope")
