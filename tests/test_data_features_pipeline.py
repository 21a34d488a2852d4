"""Feature files (validation, streaming) and the tf.data pipeline (shapes, determinism, P x K)."""

import numpy as np
import pytest

from tfface.data.features import iter_feature_batches, load_features, save_features
from tfface.data.pipeline import identity_balanced_batches, make_dataset
from tfface.errors import DataError


def test_feature_round_trip_and_streaming(tmp_path, rng):
    x = rng.normal(size=(1000, 16)).astype(np.float32)
    p = save_features(tmp_path / "f.npz", x, np.arange(1000), ids=[f"id{i}" for i in range(1000)])
    fs = load_features(p, expected_dim=16)
    assert fs.dim == 16 and len(fs) == 1000 and fs.ids[3] == "id3"
    np.testing.assert_array_equal(np.concatenate(list(iter_feature_batches(p, 300))), x)
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize(
    "arrays,match",
    [
        ({"labels": np.zeros(3)}, "missing field 'features'"),
        ({"features": np.zeros((3, 4)), "labels": np.zeros(2)}, "'labels' has shape"),
        ({"features": np.zeros(3), "labels": np.zeros(3)}, "must be 2-D"),
        ({"features": np.zeros((3, 4))}, "missing field 'labels'"),
    ],
)
def test_bad_feature_files_name_file_and_field(tmp_path, arrays, match):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError, match=match) as e:
        load_features(p)
    assert "bad.npz" in str(e.value)


def test_feature_dimension_and_nan(tmp_path):
    x = np.ones((5, 8), np.float32)
    p = save_features(tmp_path / "f.npz", x, np.arange(5))
    with pytest.raises(DataError, match="dimension 8, expected 128"):
        load_features(p, expected_dim=128)
    x[3, 1] = np.inf
    with pytest.raises(DataError, match="1 rows .first at row 3"):
        save_features(tmp_path / "g.npz", x, np.arange(5))
    assert not (tmp_path / "g.npz").exists()  # nothing written on bad input


def test_dataset_shapes_determinism_and_errors(rng):
    images = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(10), 4)
    ds = make_dataset(images, labels, batch_size=8, training=True, seed=3)
    a = [x.numpy() for x, _ in ds]
    b = [x.numpy() for x, _ in make_dataset(images, labels, batch_size=8, training=True, seed=3)]
    assert len(a) == 5 and a[0].shape == (8, 16, 16, 3) and a[0].dtype == np.float32
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].min() >= -1 and a[0].max() <= 1
    x, y = next(iter(make_dataset(images, labels, batch_size=40)))
    np.testing.assert_allclose(x.numpy(), images / 127.5 - 1, atol=1e-6)  # no augmentation at evaluation
    np.testing.assert_array_equal(y.numpy(), labels)
    with pytest.raises(DataError, match="images"):
        make_dataset(images[:, :, :, :2], labels, 8)
    with pytest.raises(DataError, match="batch_size"):
        make_dataset(images, labels, 64, training=True)


def test_identity_balanced_batches():
    labels = np.array([0] * 5 + [1] * 2 + [2] * 6 + [3] * 4)
    batches = identity_balanced_batches(labels, p=3, k=4, num_batches=20, seed=0)
    assert batches.shape == (20, 12)
    for b in batches:
        ids, counts = np.unique(labels[b], return_counts=True)
        assert len(ids) == 3 and set(counts) == {4}
    with pytest.raises(DataError, match="fewer than P=5"):
        identity_balanced_batches(labels, p=5, k=2, num_batches=1)
