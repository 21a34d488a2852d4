"""InsightFace / MXNet RecordIO (``.rec`` + ``.idx``) in pure Python, without mxnet.

Record layout (dmlc RecordIO), each starting at a 4-byte aligned offset::

    uint32 magic 0xced7230a
    uint32 lrecord      upper 3 bits: cflag (0 whole record; 1/2/3 first/middle/last part),
                        lower 29 bits: length of this part
    payload             ``length`` bytes, then zero padding to a multiple of 4

A payload that contains the magic word at an aligned position is split into parts there (the
magic itself is dropped and restored on reading), exactly as dmlc's writer does.

Payload: an IRHeader ``struct.pack("<IfQQ", flag, label, id, id2)``; when ``flag > 0`` it is
followed by ``flag`` float32 labels (and the header's ``label`` is ignored); the rest is the
encoded image (JPEG/PNG). The ``.idx`` file holds text lines ``key<TAB>offset``.

InsightFace datasets (``train.rec``) put a header at key 0 with ``flag > 0`` whose labels are
``(first identity key, end of identity keys)``: images are keys ``1 .. label[0] - 1`` and keys
``label[0] .. label[1] - 1`` are per-identity records whose labels are ``(first image key,
end image key)``. :class:`RecordIOReader` lists only the image keys, as InsightFace's
``MXFaceDataset`` does. Every bad input raises :class:`DataError` naming the file and byte offset.

Example (the most-asked question, "how do I build a .rec from my own images")::

    rec, idx = images_to_rec("faces", "out/train")   # faces/<identity>/<image> -> out/train.rec/.idx
    reader = RecordIOReader(rec)
    image = reader.read_image(reader.keys[0])         # uint8 [H, W, 3]
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from tfface.atomic import atomic_path
from tfface.errors import DataError

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LEN_MASK = (1 << 29) - 1
IR_FORMAT = "<IfQQ"
IR_SIZE = struct.calcsize(IR_FORMAT)  # 24
_FLOAT32_EXACT = 1 << 24  # integers up to this are exact in float32 labels


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def pack_record(label: float | Sequence[float] | np.ndarray, image_bytes: bytes, id: int = 0, id2: int = 0) -> bytes:
    """Payload for one record: IRHeader, labels (when more than a scalar) and image bytes.

    A scalar ``label`` goes into the IRHeader (``flag = 0``); a sequence sets ``flag`` to its length
    and follows the header as float32 values, as ``mxnet.recordio.pack`` does.
    """
    try:
        arr = np.asarray(label, np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise DataError(f"record label must be a number or a sequence of numbers, got {label!r}") from e
    if arr.size == 0 or not np.isfinite(arr).all():
        raise DataError(f"record label must be finite and non-empty, got {label!r}")
    if np.ndim(label) == 0:
        header = struct.pack(IR_FORMAT, 0, float(arr[0]), int(id), int(id2))
        return header + bytes(image_bytes)
    header = struct.pack(IR_FORMAT, arr.size, 0.0, int(id), int(id2))
    return header + arr.astype("<f4").tobytes() + bytes(image_bytes)


def encode_image(image: np.ndarray, format: str = "png") -> bytes:
    """Encode a uint8 [H, W] or [H, W, 3] array as PNG (default, lossless) or JPEG (quality 95) bytes."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3))):
        raise DataError(f"image must be uint8 [H, W] or [H, W, 3], got {arr.dtype} shape {arr.shape}")
    if format.lower() not in ("png", "jpg", "jpeg"):
        raise DataError(f"unknown image format {format!r} (png or jpeg)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    buf = io.BytesIO()
    if format.lower() == "png":
        Image.fromarray(arr).save(buf, format="PNG")
    else:
        Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode JPEG/PNG/... bytes to uint8 [H, W, 3] RGB; ``where`` names the source in errors."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(im.convert("RGB"), np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{where}: image bytes cannot be decoded ({e})") from e


class RecordIOReader:
    """Random access to an indexed RecordIO file (``.idx`` beside the ``.rec`` unless given).

    ``keys`` lists the image keys only (see the module docstring); ``read(key)`` returns
    ``(label float32 array (1,) or (flag,), image bytes)``, ``read_image(key)`` the decoded image,
    ``label(key)`` the identity as InsightFace reads it (the first label, as int). Iterating yields
    ``(key, label, image bytes)`` over ``keys``. The index is checked against the file size when
    opening; every record is bounds-checked when read. Reads open the file each time, so one reader
    can be shared by threads.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        if not self.rec_path.is_file():
            raise DataError(f"RecordIO file not found: {self.rec_path}")
        if not self.idx_path.is_file():
            raise DataError(f"RecordIO index not found: {self.idx_path} (for {self.rec_path})")
        self.file_size = self.rec_path.stat().st_size
        self.offsets: dict[int, int] = self._read_idx()
        self.header0: tuple[int, int] | None = None
        keys = list(self.offsets)
        if 0 in self.offsets:
            flag, label, _ = self._parse(0)
            if flag > 0 and label.size >= 2:  # InsightFace header, as MXFaceDataset reads it
                first_id, end_id = int(label[0]), int(label[1])
                self.header0 = (first_id, end_id)
                keys = list(range(1, first_id))
                missing = [k for k in keys if k not in self.offsets]
                if missing:
                    raise DataError(f"{self.idx_path}: header record 0 of {self.rec_path} lists image keys "
                                    f"1..{first_id - 1} but key {missing[0]} is not in the index "
                                    f"({len(missing)} missing)")
        self.keys: list[int] = keys

    def _read_idx(self) -> dict[int, int]:
        offsets: dict[int, int] = {}
        with open(self.idx_path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.split()
                try:
                    if len(parts) != 2:
                        raise ValueError(line)
                    key, offset = int(parts[0]), int(parts[1])
                except ValueError as e:
                    raise DataError(f"{self.idx_path}: line {lineno} is not 'key<TAB>offset': {line.strip()!r}") from e
                if offset < 0 or offset + 8 > self.file_size:
                    raise DataError(f"{self.idx_path}: line {lineno}: key {key} has byte offset {offset} beyond "
                                    f"the end of {self.rec_path} ({self.file_size} bytes)")
                if offset % 4:
                    raise DataError(f"{self.idx_path}: line {lineno}: key {key} has byte offset {offset}, "
                                    f"not 4-byte aligned as RecordIO records are")
                if key in offsets:
                    raise DataError(f"{self.idx_path}: line {lineno}: key {key} appears twice")
                offsets[key] = offset
        if not offsets:
            raise DataError(f"{self.idx_path}: empty index")
        return offsets

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, bytes]]:
        for key in self.keys:
            label, data = self.read(key)
            yield key, label, data

    def __repr__(self) -> str:
        return f"RecordIOReader({str(self.rec_path)!r}: {len(self)} images, header0={self.header0})"

    def _offset(self, key: int) -> int:
        try:
            return self.offsets[int(key)]
        except KeyError:
            raise DataError(f"{self.idx_path}: key {key} not in the index of {self.rec_path}") from None

    def read_payload(self, key: int) -> bytes:
        """The raw payload of record ``key`` (parts joined), bounds-checked."""
        pos = self._offset(key)
        chunks: list[bytes] = []
        with open(self.rec_path, "rb") as f:
            while True:
                if pos + 8 > self.file_size:
                    raise DataError(f"{self.rec_path}: record header at byte offset {pos} runs past the end "
                                    f"of the file ({self.file_size} bytes; key {key})")
                f.seek(pos)
                magic, lrec = struct.unpack("<II", f.read(8))
                if magic != MAGIC:
                    raise DataError(f"{self.rec_path}: bad magic 0x{magic:08x} at byte offset {pos} "
                                    f"(expected 0x{MAGIC:08x}; key {key})")
                cflag, length = lrec >> 29, lrec & _LEN_MASK
                if cflag > 3:
                    raise DataError(f"{self.rec_path}: unknown record part flag {cflag} at byte offset {pos} "
                                    f"(key {key})")
                if (cflag in (2, 3)) != bool(chunks):
                    what = "continuation part without a first part" if cflag in (2, 3) else "new record inside a split one"
                    raise DataError(f"{self.rec_path}: {what} (flag {cflag}) at byte offset {pos} (key {key})")
                if pos + 8 + length > self.file_size:
                    raise DataError(f"{self.rec_path}: record at byte offset {pos} has length {length}, "
                                    f"running past the end of the file ({self.file_size} bytes; key {key})")
                if chunks:
                    chunks.append(_MAGIC_BYTES)
                chunks.append(f.read(length))
                pos += 8 + length + _pad4(length)
                if cflag in (0, 3):
                    return b"".join(chunks)

    def _parse(self, key: int) -> tuple[int, np.ndarray, bytes]:
        payload = self.read_payload(key)
        offset = self._offset(key)
        if len(payload) < IR_SIZE:
            raise DataError(f"{self.rec_path}: record at byte offset {offset} (key {key}) has {len(payload)} "
                            f"payload bytes, too short for the {IR_SIZE}-byte IRHeader")
        flag, label, _id, _id2 = struct.unpack_from(IR_FORMAT, payload)
        rest = payload[IR_SIZE:]
        if flag > 0:
            if len(rest) < 4 * flag:
                raise DataError(f"{self.rec_path}: record at byte offset {offset} (key {key}) declares {flag} "
                                f"labels but has only {len(rest)} bytes after the IRHeader")
            labels = np.frombuffer(rest[: 4 * flag], "<f4").astype(np.float32)
            return flag, labels, rest[4 * flag:]
        return flag, np.asarray([label], np.float32), rest

    def read(self, key: int) -> tuple[np.ndarray, bytes]:
        """(label float32 array: (1,) for a scalar label, (flag,) otherwise; encoded image bytes)."""
        _, labels, data = self._parse(key)
        return labels, data

    def label(self, key: int) -> int:
        """The identity of image ``key``: its first label as int (as InsightFace's ``MXFaceDataset``)."""
        return int(self.read(key)[0][0])

    def read_image(self, key: int) -> np.ndarray:
        """Decoded image of record ``key``: uint8 [H, W, 3] RGB."""
        _, data = self.read(key)
        return decode_image(data, f"{self.rec_path}: record key {key} at byte offset {self._offset(key)}")


class RecordIOWriter:
    """Write an indexed RecordIO pair; both files appear only when the writer closes without error.

    Use as a context manager (or call :meth:`close`). Data goes to temporary files beside the
    targets; an exception inside the ``with`` block (or :meth:`abort`) removes them and leaves any
    old files as they were. Keys must be unique non-negative integers.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        if self.rec_path.resolve() == self.idx_path.resolve():
            raise DataError(f"{self.rec_path}: the .rec and .idx paths are the same file")
        self._stack = contextlib.ExitStack()
        tmp_rec = self._stack.enter_context(atomic_path(self.rec_path))
        tmp_idx = self._stack.enter_context(atomic_path(self.idx_path))
        self._rec = self._stack.enter_context(open(tmp_rec, "wb"))
        self._idx = self._stack.enter_context(open(tmp_idx, "w", encoding="utf-8"))
        self._pos = 0
        self._keys: set[int] = set()
        self._closed = False

    def __enter__(self) -> RecordIOWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._closed = True
        return bool(self._stack.__exit__(exc_type, exc, tb))

    def close(self) -> None:
        """Finish: rename the temporary files onto the targets."""
        if not self._closed:
            self._closed = True
            self._stack.close()

    def abort(self) -> None:
        """Discard everything written so far; the targets are left as they were."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(_Abort):
                self._stack.__exit__(_Abort, _Abort(), None)

    def __len__(self) -> int:
        return len(self._keys)

    def _write_part(self, cflag: int, data: bytes) -> None:
        self._rec.write(_MAGIC_BYTES + struct.pack("<I", (cflag << 29) | len(data)) + data)
        self._rec.write(b"\0" * _pad4(len(data)))
        self._pos += 8 + len(data) + _pad4(len(data))

    def write_payload(self, key: int, payload: bytes) -> None:
        """Append one raw payload under ``key`` (split where it contains the magic, as dmlc does)."""
        if self._closed:
            raise DataError(f"{self.rec_path}: writer is closed")
        key = int(key)
        if key < 0 or key in self._keys:
            raise DataError(f"{self.rec_path}: key {key} is negative or already written")
        if len(payload) > _LEN_MASK:
            raise DataError(f"{self.rec_path}: record for key {key} has {len(payload)} bytes, over the 2^29-1 limit")
        self._keys.add(key)
        self._idx.write(f"{key}\t{self._pos}\n")
        start = 0
        for i in range(0, len(payload) - len(payload) % 4, 4):
            if payload[i:i + 4] == _MAGIC_BYTES:
                self._write_part(1 if start == 0 else 2, payload[start:i])
                start = i + 4
        self._write_part(3 if start else 0, payload[start:])

    def write(self, key: int, label: float | Sequence[float] | np.ndarray, image: bytes | np.ndarray) -> None:
        """Write an image record: ``image`` is encoded bytes (stored as is) or a uint8 array (stored as PNG).

        The IRHeader's ``id`` is set to ``key``, as mxnet's ``im2rec`` does.
        """
        data = image if isinstance(image, (bytes, bytearray, memoryview)) else encode_image(image)
        try:
            payload = pack_record(label, bytes(data), id=int(key))
        except DataError as e:
            raise DataError(f"{self.rec_path}: key {key}: {e}") from e
        self.write_payload(key, payload)

    def write_header(self, num_images: int, num_identities: int) -> None:
        """InsightFace header at key 0: labels (first identity key, end identity key) = (N + 1, N + 1 + C).

        Raises :class:`DataError` when the keys are too large to be exact in float32 labels (2^24).
        """
        end = int(num_images) + 1 + int(num_identities)
        if num_images < 1 or num_identities < 1 or end > _FLOAT32_EXACT:
            raise DataError(f"{self.rec_path}: header needs 1 <= images, identities and N + 1 + C <= 2^24 "
                            f"(float32 labels), got N={num_images}, C={num_identities}")
        self.write_payload(0, pack_record([num_images + 1, end], b""))


class _Abort(Exception):
    pass


_PASS_THROUGH = {".jpg", ".jpeg", ".png"}


def images_to_rec(image_folder_root: str | os.PathLike, out_prefix: str | os.PathLike,
                  progress: bool = True) -> tuple[Path, Path]:
    """Build ``<out_prefix>.rec`` / ``.idx`` (InsightFace layout) from ``root/<identity>/<image>``.

    Images get keys 1..N (identity by identity, as :class:`~tfface.data.image_folder.ImageFolder`
    orders them) with their identity index as label; key 0 is the header (N + 1, N + 1 + C) and keys
    N+1..N+C are identity records with labels (first image key, end image key). JPEG/PNG files are
    stored as they are (after checking that they decode); other formats are re-encoded as PNG.
    Nothing is written unless every image reads. Returns the two paths.
    """
    from tfface.data.image_folder import ImageFolder, load_image

    folder = ImageFolder(image_folder_root)
    rec_path = Path(f"{out_prefix}.rec")
    idx_path = Path(f"{out_prefix}.idx")
    n, c = len(folder), folder.num_classes
    with RecordIOWriter(rec_path, idx_path) as writer:
        writer.write_header(n, c)
        ranges: dict[int, list[int]] = {}
        items = list(zip(folder.paths, folder.labels.tolist(), strict=True))
        for key, (path, label) in enumerate(tqdm(items, desc=f"packing {rec_path.name}", unit="img",
                                                 disable=not progress), start=1):
            image = load_image(path)  # raises DataError naming a corrupt file
            data = path.read_bytes() if path.suffix.lower() in _PASS_THROUGH else encode_image(image)
            writer.write(key, float(label), data)
            ranges.setdefault(label, [key, key + 1])[1] = key + 1
        for label in range(c):
            start, end = ranges[label]
            writer.write_payload(n + 1 + label, pack_record([start, end], b"", id=n + 1 + label))
    return rec_path, idx_path
