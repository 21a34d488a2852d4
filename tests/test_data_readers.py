"""Image folders, InsightFace .rec/.idx, TFRecords and feature files: round trips and every bad input."""

from __future__ import annotations

import struct
import zipfile

import numpy as np
import pytest
from PIL import Image

from tfface.data.features import FeatureSet, iter_feature_batches, load_features, save_features
from tfface.data.image_folder import ImageFolder, load_image
from tfface.data.mxnet_rec import MAGIC, RecordIOReader, RecordIOWriter, encode_image, images_to_rec
from tfface.data.sources import load_images
from tfface.data.tfrecord import tfrecord_dataset, write_tfrecord
from tfface.errors import DataError


def _img(seed: int, h: int = 8, w: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _folder(root, per_id=(2, 1), size=(8, 8), ext=".png"):
    images = {}
    for c, n in enumerate(per_id):
        d = root / f"id{c}"
        d.mkdir(parents=True)
        for i in range(n):
            im = _img(10 * c + i, *size)
            Image.fromarray(im).save(d / f"{i}{ext}")
            images[d / f"{i}{ext}"] = im
    return images


# ---------------------------------------------------------------- image folders

def test_image_folder_round_trip(tmp_path):
    images = _folder(tmp_path / "faces", per_id=(2, 1))
    (tmp_path / "faces" / "id0" / "notes.txt").write_text("ignored")
    folder = ImageFolder(tmp_path / "faces")
    assert folder.class_names == ["id0", "id1"]
    assert folder.labels.dtype == np.int64 and folder.labels.tolist() == [0, 0, 1]
    ims, labels = folder.load(progress=False)
    assert ims.shape == (3, 8, 8, 3) and ims.dtype == np.uint8
    for p, im in zip(folder.paths, ims, strict=True):
        np.testing.assert_array_equal(im, images[p])
    assert labels.tolist() == [0, 0, 1]
    resized, _ = folder.load(size=(5, 6), progress=False)
    assert resized.shape == (3, 5, 6, 3)


def test_load_image_grey_pgm(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey).save(tmp_path / "g.pgm")
    im = load_image(tmp_path / "g.pgm")
    assert im.shape == (3, 4, 3)
    for ch in range(3):
        np.testing.assert_array_equal(im[..., ch], grey)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="missing_root"):
        ImageFolder(tmp_path / "missing_root")
    (tmp_path / "empty_root").mkdir()
    with pytest.raises(DataError, match="no identity"):
        ImageFolder(tmp_path / "empty_root")
    _folder(tmp_path / "f", per_id=(1,))
    (tmp_path / "f" / "lonely").mkdir()
    with pytest.raises(DataError, match="lonely"):
        ImageFolder(tmp_path / "f")


def test_corrupt_image_names_file(tmp_path):
    _folder(tmp_path / "f", per_id=(1,))
    bad = tmp_path / "f" / "id0" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        ImageFolder(tmp_path / "f").load(progress=False)


def test_mismatched_sizes_name_file_and_shapes(tmp_path):
    _folder(tmp_path / "f", per_id=(1,))
    d = tmp_path / "f" / "id1"
    d.mkdir()
    Image.fromarray(_img(3, 6, 7)).save(d / "odd.png")
    with pytest.raises(DataError, match=r"odd\.png.*\(6, 7, 3\).*\(8, 8, 3\)"):
        ImageFolder(tmp_path / "f").load(progress=False)
    ims, _ = ImageFolder(tmp_path / "f").load(size=(8, 8), progress=False)
    assert ims.shape == (2, 8, 8, 3)


# ---------------------------------------------------------------- .rec / .idx

def _write_rec(tmp_path, n=4):
    images = [_img(i, 6 + i % 2, 5) for i in range(n)]
    labels = [i % 2 for i in range(n)]
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    with RecordIOWriter(rec, idx) as w:
        w.write_header(n, 2)
        for k, (im, lab) in enumerate(zip(images, labels, strict=True), start=1):
            w.write(k, float(lab), im)
        w.write(n + 1, [1.0, 3.0], b"")  # identity records: not images
        w.write(n + 2, [3.0, float(n + 1)], b"")
    return rec, idx, images, labels


def test_rec_round_trip_with_header(tmp_path):
    rec, idx, images, labels = _write_rec(tmp_path)
    r = RecordIOReader(rec)
    assert r.header0 == (5, 7)
    assert r.keys == [1, 2, 3, 4] and len(r) == 4
    for k in r.keys:
        label, data = r.read(k)
        assert label.dtype == np.float32 and label.shape == (1,) and label[0] == labels[k - 1]
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        np.testing.assert_array_equal(r.read_image(k), images[k - 1])
    label, _ = r.read(5)
    assert label.tolist() == [1.0, 3.0]


def test_rec_without_header_lists_all_keys(tmp_path):
    rec = tmp_path / "plain.rec"
    with RecordIOWriter(rec, tmp_path / "plain.idx") as w:
        w.write(0, 7.0, _img(0))
        w.write(1, 8.0, _img(1))
    r = RecordIOReader(rec)
    assert r.header0 is None and r.keys == [0, 1]
    assert r.read(1)[0].tolist() == [8.0]


def test_rec_payload_containing_magic_is_split_and_rejoined(tmp_path):
    data = b"abcd" + struct.pack("<I", MAGIC) + b"efgh" + struct.pack("<I", MAGIC) + b"xyz"
    rec = tmp_path / "m.rec"
    with RecordIOWriter(rec) as w:
        w.write(3, 1.0, data)
    assert RecordIOReader(rec).read(3)[1] == data


def test_rec_writer_leaves_nothing_on_error(tmp_path):
    rec = tmp_path / "x.rec"
    with pytest.raises(RuntimeError), RecordIOWriter(rec, tmp_path / "x.idx") as w:
        w.write(1, 0.0, _img(0))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_rec_bad_magic(tmp_path):
    rec, idx, _, _ = _write_rec(tmp_path)
    offset = int(idx.read_text().splitlines()[2].split("\t")[1])
    raw = bytearray(rec.read_bytes())
    raw[offset:offset + 4] = b"\0\0\0\0"
    rec.write_bytes(bytes(raw))
    r = RecordIOReader(rec)
    with pytest.raises(DataError, match=rf"train\.rec.*magic.*offset {offset}"):
        r.read(r.keys[1])


def test_rec_truncated_record(tmp_path):
    rec, idx, _, _ = _write_rec(tmp_path)
    key, offset = idx.read_text().splitlines()[-1].split("\t")  # the last record
    rec.write_bytes(rec.read_bytes()[: int(offset) + 20])
    with pytest.raises(DataError, match=rf"train\.rec.*offset {offset}.*past the end"):
        RecordIOReader(rec).read(int(key))


def test_rec_truncated_irheader(tmp_path):
    rec = tmp_path / "t.rec"
    with RecordIOWriter(rec) as w:
        w.write_payload(0, b"\1\0\0\0" * 3)  # 12 bytes: less than the 24-byte IRHeader
    with pytest.raises(DataError, match=r"t\.rec.*offset 0.*IRHeader"):
        RecordIOReader(rec)


def test_rec_idx_offset_past_eof(tmp_path):
    rec, idx, _, _ = _write_rec(tmp_path)
    size = rec.stat().st_size
    idx.write_text(idx.read_text() + f"99\t{size + 100}\n")
    with pytest.raises(DataError, match=rf"train\.idx.*offset {size + 100}"):
        RecordIOReader(rec)


def test_rec_missing_files(tmp_path):
    with pytest.raises(DataError, match="nothere.rec"):
        RecordIOReader(tmp_path / "nothere.rec")
    (tmp_path / "a.rec").write_bytes(b"")
    with pytest.raises(DataError, match=r"a\.idx"):
        RecordIOReader(tmp_path / "a.rec")


def test_images_to_rec_round_trip(tmp_path):
    images = _folder(tmp_path / "faces", per_id=(2, 3), ext=".png")
    rec, idx = images_to_rec(tmp_path / "faces", tmp_path / "out" / "faces", progress=False)
    assert rec.name == "faces.rec" and idx.name == "faces.idx"
    r = RecordIOReader(rec)
    assert r.header0 == (6, 8) and r.keys == [1, 2, 3, 4, 5]
    folder = ImageFolder(tmp_path / "faces")
    for k, p, lab in zip(r.keys, folder.paths, folder.labels, strict=True):
        assert r.read(k)[0][0] == lab
        np.testing.assert_array_equal(r.read_image(k), images[p])
    assert r.read(6)[0].tolist() == [1.0, 3.0] and r.read(7)[0].tolist() == [3.0, 6.0]


def test_images_to_rec_corrupt_file_writes_nothing(tmp_path):
    _folder(tmp_path / "faces", per_id=(1,))
    (tmp_path / "faces" / "id0" / "zz.png").write_bytes(b"garbage")
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError, match=r"zz\.png"):
        images_to_rec(tmp_path / "faces", tmp_path / "out" / "faces", progress=False)
    assert list((tmp_path / "out").iterdir()) == []


# ---------------------------------------------------------------- TFRecord

def test_tfrecord_round_trip_single_and_shards(tmp_path):
    images = np.stack([_img(i) for i in range(5)])
    labels = np.array([0, 1, 2, 1, 0])
    (one,) = write_tfrecord(tmp_path / "a.tfrecord", images, labels)
    got = list(tfrecord_dataset(one).as_numpy_iterator())
    assert [int(lab) for _, lab in got] == labels.tolist()
    for (im, _), ref in zip(got, images, strict=True):
        assert im.dtype == np.uint8
        np.testing.assert_array_equal(im, ref)

    raw = [encode_image(im) for im in images]  # already-encoded bytes are stored as they are
    paths = write_tfrecord(tmp_path / "s", raw, labels, shards=2)
    assert [p.name for p in paths] == ["s-00000-of-00002", "s-00001-of-00002"]
    got = list(tfrecord_dataset(str(tmp_path / "s-*")).as_numpy_iterator())
    order = [0, 2, 4, 1, 3]  # round-robin over shards, shards read in order
    assert [int(lab) for _, lab in got] == labels[order].tolist()
    for (im, _), i in zip(got, order, strict=True):
        np.testing.assert_array_equal(im, images[i])


def test_tfrecord_no_match(tmp_path):
    with pytest.raises(DataError, match="nothing-"):
        tfrecord_dataset(str(tmp_path / "nothing-*.tfrecord"))


def test_tfrecord_bad_inputs_write_nothing(tmp_path):
    with pytest.raises(DataError, match="2 images but 3 labels"):
        write_tfrecord(tmp_path / "b.tfrecord", [_img(0), _img(1)], [0, 1, 2])
    with pytest.raises(DataError, match="image 1"):
        write_tfrecord(tmp_path / "b.tfrecord", [_img(0), np.zeros((4, 4), np.float32)], [0, 1])
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- sources.load_images

def test_sources_load_images_all_formats(tmp_path):
    images = _folder(tmp_path / "faces", per_id=(2, 1))
    ref = np.stack([images[p] for p in ImageFolder(tmp_path / "faces").paths])
    ims, labels, paths = load_images(tmp_path / "faces", progress=False)
    np.testing.assert_array_equal(ims, ref)
    assert labels.tolist() == [0, 0, 1] and len(paths) == 3

    rec, _ = images_to_rec(tmp_path / "faces", tmp_path / "faces_rec", progress=False)
    ims, labels, _ = load_images(rec, progress=False)
    np.testing.assert_array_equal(ims, ref)
    assert labels.tolist() == [0, 0, 1]

    write_tfrecord(tmp_path / "faces.tfrecord", ref, np.array([0, 0, 1]))
    ims, labels, _ = load_images(tmp_path / "faces.tfrecord", size=4)
    assert ims.shape == (3, 4, 4, 3) and labels.tolist() == [0, 0, 1]


# ---------------------------------------------------------------- more .rec checks

def test_rec_iteration_label_and_jpeg_pass_through(tmp_path):
    rec, idx, images, labels = _write_rec(tmp_path)
    r = RecordIOReader(rec, idx)
    items = list(r)
    assert [k for k, _, _ in items] == r.keys
    assert [int(lab[0]) for _, lab, _ in items] == labels == [r.label(k) for k in r.keys]

    faces = tmp_path / "faces"
    (faces / "a").mkdir(parents=True)
    (faces / "b").mkdir()
    Image.fromarray(_img(1, 16, 16)).save(faces / "a" / "x.jpg", quality=90)
    grey = _img(2, 6, 5)[..., 0]
    Image.fromarray(grey).save(faces / "b" / "g.pgm")
    rec2, _ = images_to_rec(faces, tmp_path / "mine", progress=False)
    r2 = RecordIOReader(rec2)
    assert r2.read(1)[1] == (faces / "a" / "x.jpg").read_bytes()  # JPEG stored as it is
    assert r2.read(2)[1][:4] == b"\x89PNG"  # PGM re-encoded losslessly
    np.testing.assert_array_equal(r2.read_image(2), np.repeat(grey[..., None], 3, axis=2))


def test_rec_writer_abort_and_header_limits(tmp_path):
    w = RecordIOWriter(tmp_path / "a.rec")
    w.write(1, 0.0, _img(0))
    w.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match=r"2\^24"), RecordIOWriter(tmp_path / "big.rec") as w:
        w.write_header(num_images=1 << 24, num_identities=10)
    with pytest.raises(DataError, match="already written"), RecordIOWriter(tmp_path / "dup.rec") as w:
        w.write(1, 0.0, b"x")
        w.write(1, 0.0, b"y")
    with pytest.raises(DataError, match=r"nan\.rec: key 2.*finite"), RecordIOWriter(tmp_path / "nan.rec") as w:
        w.write(2, float("nan"), b"x")
    assert list(tmp_path.iterdir()) == []


def test_rec_continuation_part_without_first(tmp_path):
    rec = tmp_path / "c.rec"
    payload = struct.pack("<IfQQ", 0, 1.0, 0, 0) + b"data"
    rec.write_bytes(struct.pack("<II", MAGIC, (2 << 29) | len(payload)) + payload)
    (tmp_path / "c.idx").write_text("5\t0\n")
    with pytest.raises(DataError, match=r"c\.rec.*offset 0"):
        RecordIOReader(rec).read(5)
    (tmp_path / "c.idx").write_text("5\t2\n")
    with pytest.raises(DataError, match=r"c\.idx.*offset 2.*aligned"):
        RecordIOReader(rec)


def test_tfrecord_rejects_bad_bytes_and_too_many_shards(tmp_path):
    with pytest.raises(DataError, match="image 1: encoded bytes are neither PNG nor JPEG"):
        write_tfrecord(tmp_path / "b.tfrecord", [encode_image(_img(0)), b"GIF89a..."], [0, 1])
    with pytest.raises(DataError, match="3 shards for 2 images"):
        write_tfrecord(tmp_path / "b.tfrecord", [_img(0), _img(1)], [0, 1], shards=3)
    assert list(tmp_path.iterdir()) == []
    smooth = np.stack([*np.meshgrid(np.arange(16) * 16, np.arange(16) * 8, indexing="ij"), np.full((16, 16), 90)],
                      axis=-1).astype(np.uint8)
    jpeg = write_tfrecord(tmp_path / "j.tfrecord", smooth[None], [4], format="jpeg")
    im, lab = next(tfrecord_dataset([jpeg[0]]).as_numpy_iterator())
    assert lab == 4 and im.shape == (16, 16, 3)
    assert 0 < np.abs(im.astype(int) - smooth).mean() < 4  # lossy, but the same image


# ---------------------------------------------------------------- feature files

def _feats(n=7, d=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_features_round_trip(tmp_path):
    f = _feats()
    out = save_features(tmp_path / "g.npz", f, np.arange(7) % 3, ids=[f"p{i}" for i in range(7)],
                        paths=[tmp_path / f"{i}.jpg" for i in range(7)])
    fs = load_features(out, expected_dim=5)
    assert isinstance(fs, FeatureSet) and len(fs) == 7 and fs.dim == 5
    np.testing.assert_array_equal(fs.features, f)
    assert fs.features.dtype == np.float32 and fs.labels.dtype == np.int64
    assert fs.labels.tolist() == [0, 1, 2, 0, 1, 2, 0] and fs.ids[3] == "p3" and fs.paths[0].endswith("0.jpg")
    with zipfile.ZipFile(out) as z:  # uncompressed so it can be streamed
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    fs = load_features(save_features(tmp_path / "h.npz", f.astype(np.float64), [1] * 7, ids=np.arange(7)))
    assert fs.ids.dtype == np.int64 and fs.paths is None and fs.features.dtype == np.float32


def test_save_features_validates_before_writing(tmp_path):
    f = _feats()
    bad = f.copy()
    bad[[2, 4]] = np.nan
    with pytest.raises(DataError, match=r"s\.npz.*'features'.*2 rows.*row 2"):
        save_features(tmp_path / "s.npz", bad, np.arange(7))
    with pytest.raises(DataError, match=r"s\.npz.*'labels'.*\(6,\)"):
        save_features(tmp_path / "s.npz", f, np.arange(6))
    with pytest.raises(DataError, match=r"s\.npz.*'ids'.*\(3,\)"):
        save_features(tmp_path / "s.npz", f, np.arange(7), ids=[1, 2, 3])
    with pytest.raises(DataError, match=r"s\.npz.*'ids'.*object"):
        save_features(tmp_path / "s.npz", f, np.arange(7), ids=np.array([1, "a", 2.0, 3, 4, 5, 6], object))
    with pytest.raises(DataError, match=r"s\.npz.*'labels'.*integers"):
        save_features(tmp_path / "s.npz", f, np.linspace(0, 1, 7))
    with pytest.raises(DataError, match=r"s\.npz.*'features'.*2-D"):
        save_features(tmp_path / "s.npz", f[0], [0])
    assert list(tmp_path.iterdir()) == []


def test_load_features_errors_name_file_and_field(tmp_path):
    f, labels = _feats(), np.arange(7)
    np.savez(tmp_path / "nofeat.npz", labels=labels)
    with pytest.raises(DataError, match=r"nofeat\.npz: missing field 'features'"):
        load_features(tmp_path / "nofeat.npz")
    with pytest.raises(DataError, match=r"nofeat\.npz: missing field 'features'"):
        next(iter_feature_batches(tmp_path / "nofeat.npz", 2))
    np.savez(tmp_path / "g.npz", features=f, labels=labels)
    with pytest.raises(DataError, match=r"g\.npz.*'features' has dimension 5, expected 8"):
        load_features(tmp_path / "g.npz", expected_dim=8)
    with pytest.raises(DataError, match=r"g\.npz.*dimension 5, expected 8"):
        next(iter_feature_batches(tmp_path / "g.npz", 2, expected_dim=8))
    bad = f.copy()
    bad[3, 1], bad[5, 0] = np.nan, np.inf
    np.savez(tmp_path / "nan.npz", features=bad, labels=labels)
    with pytest.raises(DataError, match=r"nan\.npz.*NaN/Inf in 2 rows \(first at row 3\)"):
        load_features(tmp_path / "nan.npz")
    assert len(load_features(tmp_path / "nan.npz", allow_nonfinite=True)) == 7
    with pytest.raises(DataError, match=r"nan\.npz.*first at row 3"):
        list(iter_feature_batches(tmp_path / "nan.npz", 2))
    np.savez(tmp_path / "short.npz", features=f, labels=labels[:5])
    with pytest.raises(DataError, match=r"short\.npz.*'labels' has shape \(5,\), expected \(7,\)"):
        load_features(tmp_path / "short.npz")
    np.savez(tmp_path / "flat.npz", features=f[0], labels=labels[:1])
    with pytest.raises(DataError, match=r"flat\.npz.*'features' must be 2-D"):
        load_features(tmp_path / "flat.npz")
    np.savez(tmp_path / "obj.npz", features=f, labels=labels, ids=np.array([None] * 7, object))
    with pytest.raises(DataError, match=r"obj\.npz: field 'ids' cannot be read"):
        load_features(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk\.npz"):
        load_features(tmp_path / "junk.npz")
    with pytest.raises(DataError, match=r"absent\.npz"):
        load_features(tmp_path / "absent.npz")


@pytest.mark.parametrize("batch_size", [1, 3, 7, 100])
def test_streamed_feature_batches_equal_full_array(tmp_path, batch_size):
    f = _feats(n=7, d=4, seed=batch_size)
    # 'paths' comes first in the zip, so the features member starts at a non-trivial offset
    np.savez(tmp_path / "g.npz", paths=np.array([f"{i}.jpg" for i in range(7)]), features=f, labels=np.arange(7))
    np.savez_compressed(tmp_path / "c.npz", features=f.astype(np.float64), labels=np.arange(7))
    for name in ("g.npz", "c.npz"):
        blocks = list(iter_feature_batches(tmp_path / name, batch_size))
        assert [len(b) for b in blocks][:-1] == [batch_size] * (len(blocks) - 1)
        assert all(b.dtype == np.float32 for b in blocks)
        np.testing.assert_array_equal(np.concatenate(blocks), f)
    with pytest.raises(DataError, match="batch_size"):
        next(iter_feature_batches(tmp_path / "g.npz", 0))
