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
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from collections.abc import Sequence
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


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def pack_record(label: float | Sequence[float] | np.ndarray, image_bytes: bytes, id: int = 0, id2: int = 0) -> bytes:
    """Payload for one record: IRHeader, labels (when more than a scalar) and image bytes."""
    arr = np.asarray(label, np.float32).reshape(-1)
    if np.ndim(label) == 0:
        header = struct.pack(IR_FORMAT, 0, float(arr[0]), id, id2)
        return header + bytes(image_bytes)
    header = struct.pack(IR_FORMAT, arr.size, 0.0, id, id2)
    return header + arr.astype("<f4").tobytes() + bytes(image_bytes)


def encode_image(image: np.ndarray, format: str = "png") -> bytes:
    """Encode a uint8 [H, W] or [H, W, 3] array as PNG (default) or JPEG bytes."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3))):
        raise DataError(f"image must be uint8 [H, W] or [H, W, 3], got {arr.dtype} shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG" if format.lower() in ("jpg", "jpeg") else "PNG")
    return buf.getvalue()


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode JPEG/PNG/... bytes to uint8 [H, W, 3] RGB; ``where`` names the source in errors."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(im.convert("RGB"), np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{where}: image bytes cannot be decoded ({e})") from e


class RecordIOReader:
    """Random access to an indexed RecordIO file.

    ``keys`` lists the image keys only (see the module docstring); ``read(key)`` returns
    ``(label float32 (1,) or (flag,), image bytes)``, ``read_image(key)`` the decoded image.
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
            if flag > 0 and label.size >= 2:
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
                    key, offset = int(parts[0]), int(parts[1])
                except (ValueError, IndexError) as e:
                    raise DataError(f"{self.idx_path}: line {lineno} is not 'key<TAB>offset': {line.strip()!r}") from e
                if offset < 0 or offset + 8 > self.file_size:
                    raise DataError(f"{self.idx_path}: line {lineno}: key {key} has byte offset {offset} beyond "
                                    f"the end of {self.rec_path} ({self.file_size} bytes)")
                offsets[key] = offset
        if not offsets:
            raise DataError(f"{self.idx_path}: empty index")
        return offsets

    def __len__(self) -> int:
        return len(self.keys)

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
                                    f"of the file ({self.file_size} bytes)")
                f.seek(pos)
                magic, lrec = struct.unpack("<II", f.read(8))
                if magic != MAGIC:
                    raise DataError(f"{self.rec_path}: bad magic 0x{magic:08x} at byte offset {pos} "
                                    f"(expected 0x{MAGIC:08x}; key {key})")
                cflag, length = lrec >> 29, lrec & _LEN_MASK
                if pos + 8 + length > self.file_size:
                    raise DataError(f"{self.rec_path}: record at byte offset {pos} has length {length}, "
                                    f"running past the end of the file ({self.file_size} bytes)")
                data = f.read(length)
                if cflag in (2, 3) and not chunks:
                    raise DataError(f"{self.rec_path}: record part flag {cflag} at byte offset {pos} "
                                    f"without a first part (key {key})")
                if chunks:
                    chunks.append(_MAGIC_BYTES)
                chunks.append(data)
                pos += 8 + length + _pad4(length)
                if cflag == 0 or cflag == 3:
                    break
                if cflag not in (1, 2):
                    raise DataError(f"{self.rec_path}: unknown record flag {cflag} at byte offset {pos}")
        return b"".join(chunks)

    def read(self, key: int) -> tuple[np.ndarray, bytes]:
        """(label float32 (1,) or (flag,), encoded image bytes) of record ``key``."""
        _, labels, data = self._parse(key)
        return labels, data

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

    def read_image(self, key: int) -> np.ndarray:
        """Decoded image of record ``key``: uint8 [H, W, 3] RGB."""
        _, data = self.read(key)
        return decode_image(data, f"{self.rec_path}: record key {key} at byte offset {self._offset(key)}")


class RecordIOWriter:
    """Write an indexed RecordIO pair; both files appear only when the writer closes without error.

    Use as a context manager (or call :meth:`close`). Data goes to temporary files beside the
    targets; an exception inside the ``with`` block removes them and leaves any old files as they were.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
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
        """Write an image record: ``image`` is encoded bytes or a uint8 array (stored as PNG)."""
        data = image if isinstance(image, (bytes, bytearray, memoryview)) else encode_image(image)
        self.write_payload(key, pack_record(label, bytes(data)))

    def write_header(self, num_images: int, num_identities: int) -> None:
        """InsightFace header at key 0: labels (first identity key, end identity key) = (N + 1, N + 1 + C)."""
        self.write_payload(0, pack_record([num_images + 1, num_images + 1 + num_identities], b""))


_PASS_THROUGH = {".jpg", ".jpeg", ".png"}


def images_to_rec(image_folder_root: str | os.PathLike, out_prefix: str | os.PathLike,
                  progress: bool = True) -> tuple[Path, Path]:
    """Build ``<out_prefix>.rec`` / ``.idx`` (InsightFace layout) from ``root/<identity>/<image>``.

    Images get keys 1..N with their identity index as label; key 0 is the header and keys
    N+1..N+C are identity records with labels (first image key, end image key). JPEG/PNG files are
    stored as they are (after checking that they decode); other formats are re-encoded as PNG.
    Nothing is written unless every image reads.
    """
    from tfface.data.image_folder import ImageFolder, load_image

    folder = ImageFolder(image_folder_root)
    rec_path = Path(f"{out_prefix}.rec")
    idx_path = Path(f"{out_prefix}.idx")
    n, c = len(folder), folder.num_classes
    with RecordIOWriter(rec_path, idx_path) as writer:
        writer.write_header(n, c)
        ranges: dict[int, list[int]] = {}
        for key, (path, label) in enumerate(tqdm(list(zip(folder.paths, folder.labels, strict=True)),
                                                 desc=f"packing {rec_path.name}", unit="img",
                                                 disable=not progress), start=1):
            image = load_image(path)  # raises DataError naming a corrupt file
            data = path.read_bytes() if path.suffix.lower() in _PASS_THROUGH else encode_image(image)
            writer.write(key, float(label), data)
            ranges.setdefault(int(label), [key, key + 1])[1] = key + 1
        for label in range(c):
            start, end = ranges[label]
            writer.write_payload(n + 1 + label, pack_record([start, end], b""))
    return rec_path, idx_path
