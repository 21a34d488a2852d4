"""Easy and hard samples for DDL, and batches of a teacher branch plus student branches.

DDL (Huang et al., arXiv 2002.03662) pre-defines hard samples by a human prior, not by loss values:
easy samples E give the teacher distribution, each hard kind H_k one student distribution. Here:

- :func:`resolution_split`: easy = full-resolution images; hard kind ``xF`` = the same images area-
  downsampled by the factor F and bilinearly upsampled back (the renderer's own resolution loss, see
  :func:`downsample`), e.g. ``x8`` and ``x4`` in the roles of SCface's d1 (4.2 m) and d2 (2.6 m).
  Works for any images: the built-in faces or a real image folder.
- :func:`pose_split`: easy = ``|yaw| < easy_max_yaw``, hard = ``|yaw| > hard_min_yaw`` (the paper's
  VGGFace2 split: 10 and 45 degrees), from the built-in faces' ``nuisance["yaw"]`` or a per-image
  attribute file (:func:`load_attribute_file`). Images in between belong to neither (A13).
- :func:`attribute_split`: the general form, by ranges of any per-image attributes.

Each branch is a :class:`SampleSet`: images, identity labels and ``source`` (the index of the
original image, so an image is never paired with its own downsampled copy).

:class:`DDLBatchBuilder` draws the batches of Fig. 2: per distribution (teacher first, then the
students) b samples of b distinct identities and b positive pairs. A teacher pair is two easy images
of one identity; a student pair is (easy image, hard image) of one identity by default
(``student_pairs="easy-hard"``, the test protocol's gallery-probe pairing, A8) or two hard images
(``"hard-hard"``). :meth:`DDLBatchBuilder.dataset` gives a ``tf.data`` pipeline of
``(x, y)`` with ``x = {"identities", "pair_a", "pair_b"}`` each ``[b, K+1, H, W, 3]`` float32 and
``y = {"identities", "pairs"}`` each ``[b, K+1]`` int64, the layout :class:`tfface.methods.ddl.DDL`
trains on (the batch axis b is the one a ``tf.distribute`` strategy splits).

Bad input raises :class:`DataError` / :class:`ConfigError` naming the branch and field, before any
training: an empty hard subset, a branch with fewer than b identities (the negatives must be b
distinct identities), an identity of a branch without the two images a positive pair needs.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfface.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = [
    "DDLBatchBuilder",
    "SampleSet",
    "attribute_split",
    "check_ddl_batch",
    "downsample",
    "load_attribute_file",
    "pose_split",
    "resolution_split",
]

STUDENT_PAIRS = ("easy-hard", "hard-hard")


@dataclass
class SampleSet:
    """One branch's images: uint8 ``images`` [N, H, W, 3], ``labels`` [N] (identities) and ``source``
    [N] (the original image each one comes from; images with one source never form a pair)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    source: np.ndarray

    def __post_init__(self):
        self.images = np.asarray(self.images)
        self.labels = np.asarray(self.labels).astype(np.int64)
        self.source = np.asarray(self.source).astype(np.int64)
        if len(self.labels) == 0:
            raise DataError(f"{self.name}: the subset is empty (no image matches its definition)")
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise DataError(f"{self.name}.images: expected uint8 (N, H, W, 3), got {self.images.dtype} "
                            f"{self.images.shape}")
        if not len(self.images) == len(self.labels) == len(self.source):
            raise DataError(f"{self.name}: {len(self.images)} images, {len(self.labels)} labels and "
                            f"{len(self.source)} sources do not match")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def identities(self) -> np.ndarray:
        return np.unique(self.labels)

    def subset(self, index: np.ndarray, name: str | None = None) -> SampleSet:
        return SampleSet(name or self.name, self.images[index], self.labels[index], self.source[index])


# --------------------------------------------------------------------------------- transforms
def downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Resolution loss by an integer factor: area-downsample to ``size // factor`` (at least 4 px),
    then bilinearly upsample back to the input size (the built-in renderer's ``resolution_factor``,
    so built-in and real data degrade alike). uint8 [N, H, W, 3] in and out."""
    from tfface.data.synthetic import _bilinear_matrix, _box_matrix  # the renderer's own matrices

    images = np.asarray(images)
    if isinstance(factor, bool) or int(factor) != factor or factor < 1:
        raise ConfigError(f"factor: must be an integer >= 1, got {factor!r}")
    if images.ndim != 4 or images.dtype != np.uint8:
        raise DataError(f"images: expected uint8 (N, H, W, C), got {images.dtype} {images.shape}")
    factor = int(factor)
    if factor == 1:
        return images.copy()
    _, h, w, _ = images.shape
    mh = _bilinear_matrix(max(h // factor, 4), h) @ _box_matrix(h, max(h // factor, 4))
    mw = _bilinear_matrix(max(w // factor, 4), w) @ _box_matrix(w, max(w // factor, 4))
    out = np.einsum("ah,nhwc->nawc", mh, images.astype(np.float32))
    out = np.einsum("bw,nawc->nabc", mw, out)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------- splits
def _mask_range(values: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    m = np.ones(len(values), bool)
    if lo is not None:
        m &= values >= lo
    if hi is not None:
        m &= values < hi
    return m


def attribute_split(
    images: np.ndarray,
    labels: np.ndarray,
    attributes: Mapping[str, np.ndarray],
    easy: Mapping[str, tuple[float | None, float | None]],
    hard: Mapping[str, Mapping[str, tuple[float | None, float | None]]],
    absolute: Sequence[str] = ("yaw", "pitch", "roll"),
) -> tuple[SampleSet, list[SampleSet]]:
    """(easy set, [hard set per kind]) by ranges ``[low, high)`` (None = open) of per-image attributes.

    Attributes named in ``absolute`` are compared by magnitude (|yaw| < 10 rather than -10 < yaw < 10).
    Example: ``easy={"yaw": (None, 10)}, hard={"pose": {"yaw": (45, None)}}``.
    """
    labels = np.asarray(labels).astype(np.int64)
    n = len(labels)

    def select(rules: Mapping[str, tuple], where: str) -> np.ndarray:
        m = np.ones(n, bool)
        for attr, rng in rules.items():
            if attr not in attributes:
                raise DataError(f"{where}.{attr}: no such per-image attribute (have {sorted(attributes)})")
            v = np.asarray(attributes[attr], np.float64)
            if v.shape != (n,):
                raise DataError(f"attributes.{attr}: expected shape ({n},), got {v.shape}")
            if len(rng) != 2:
                raise ConfigError(f"{where}.{attr}: expected (low, high), got {rng!r}")
            m &= _mask_range(np.abs(v) if attr in absolute else v, *rng)
        return m

    e = select(easy, "easy")
    idx = np.arange(n)
    easy_set = SampleSet("easy", images[e], labels[e], idx[e])
    hards = []
    for name, rules in hard.items():
        h = select(rules, name)
        if (h & e).any():
            raise ConfigError(f"{name}: its ranges overlap the easy ranges ({int((h & e).sum())} images in both)")
        hards.append(SampleSet(name, images[h], labels[h], idx[h]))
    return easy_set, hards


def pose_split(images: np.ndarray, labels: np.ndarray, yaw: np.ndarray, easy_max_yaw: float = 10.0,
               hard_min_yaw: float = 45.0, name: str = "pose") -> tuple[SampleSet, list[SampleSet]]:
    """Easy ``|yaw| < easy_max_yaw``, hard ``|yaw| > hard_min_yaw`` (degrees; the paper's 10 and 45)."""
    if not 0 < easy_max_yaw <= hard_min_yaw:
        raise ConfigError(f"easy_max_yaw, hard_min_yaw: need 0 < easy_max_yaw <= hard_min_yaw, got "
                          f"{easy_max_yaw}, {hard_min_yaw}")
    return attribute_split(images, labels, {"yaw": yaw}, {"yaw": (None, easy_max_yaw)},
                           {name: {"yaw": (np.nextafter(hard_min_yaw, np.inf), None)}})


def resolution_split(images: np.ndarray, labels: np.ndarray, factors: Sequence[int] = (8, 4),
                     easy_mask: np.ndarray | None = None) -> tuple[SampleSet, list[SampleSet]]:
    """Easy = the images (optionally only ``easy_mask``, e.g. near-frontal ones); hard kind ``x{F}``
    per factor = the easy images downsampled by F (:func:`downsample`), hardest first as given."""
    labels = np.asarray(labels).astype(np.int64)
    idx = np.arange(len(labels))
    if easy_mask is not None:
        idx = idx[np.asarray(easy_mask, bool)]
    if not factors:
        raise ConfigError("factors: need at least one downsampling factor (one student per factor)")
    for f in factors:
        if isinstance(f, bool) or int(f) != f or f < 2:
            raise ConfigError(f"factors: each must be an integer >= 2, got {list(factors)}")
    easy = SampleSet("easy", images[idx], labels[idx], idx)
    hards = [SampleSet(f"x{int(f)}", downsample(easy.images, int(f)), easy.labels, easy.source) for f in factors]
    return easy, hards


def load_attribute_file(path: str | os.PathLike, paths: Sequence[str | os.PathLike],
                        root: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Per-image attributes from a CSV with a header: a ``path`` column (relative to ``root`` or
    absolute) and numeric columns (``yaw``, ...). Returns ``{column: [N] float64}`` in the order of
    ``paths``; an image missing from the file or a non-numeric value raises :class:`DataError`."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"attribute file not found: {p}")
    rows: dict[str, dict[str, str]] = {}
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise DataError(f"{p}: needs a header with a 'path' column, got {reader.fieldnames}")
        columns = [c for c in reader.fieldnames if c != "path"]
        for row in reader:
            rows[os.path.normpath(row["path"])] = row
    base = Path(root) if root else None

    def key(q) -> str:
        q = Path(q)
        if base is not None:
            try:
                q = q.relative_to(base)
            except ValueError:
                pass
        return os.path.normpath(str(q))

    out = {c: np.empty(len(paths)) for c in columns}
    for i, q in enumerate(paths):
        row = rows.get(key(q))
        if row is None:
            raise DataError(f"{p}: no row for image {key(q)}")
        for c in columns:
            try:
                out[c][i] = float(row[c])
            except (TypeError, ValueError):
                raise DataError(f"{p}: column {c!r} of {key(q)} is not a number ({row[c]!r})") from None
    return out


# ------------------------------------------------------------------------------------ batches
def check_ddl_batch(labels_identities: np.ndarray, labels_pairs_a: np.ndarray | None = None,
                    labels_pairs_b: np.ndarray | None = None, names: Sequence[str] | None = None) -> None:
    """Check one batch's labels ``[b, K+1]``: each branch's identity part holds b distinct identities
    (the negatives of Eq. 2 must be different subjects) and each pair is one identity."""
    li = np.asarray(labels_identities)
    if li.ndim != 2:
        raise DataError(f"labels: expected [b, K+1], got shape {li.shape}")
    names = list(names or ["teacher"] + [f"student_{k}" for k in range(1, li.shape[1])])
    for k in range(li.shape[1]):
        u, c = np.unique(li[:, k], return_counts=True)
        if len(u) != li.shape[0]:
            raise DataError(f"{names[k]}: the negatives are not distinct identities (identity {int(u[c > 1][0])} "
                            f"appears {int(c.max())} times among the b={li.shape[0]} identity samples)")
    if labels_pairs_a is not None and labels_pairs_b is not None:
        a, b = np.asarray(labels_pairs_a), np.asarray(labels_pairs_b)
        bad = np.argwhere(a != b)
        if len(bad):
            i, k = bad[0]
            raise DataError(f"{names[k]}: positive pair {i} joins identities {int(a[i, k])} and {int(b[i, k])}")


class DDLBatchBuilder:
    """Batches of one teacher branch and K student branches (the paper's Fig. 2, 3b images each).

    Example:
      >>> import numpy as np
      >>> imgs = np.zeros((40, 8, 8, 3), np.uint8); labels = np.repeat(np.arange(10), 4)
      >>> easy, hard = resolution_split(imgs, labels, factors=(2,))
      >>> builder = DDLBatchBuilder(easy, hard, b=4, seed=0)
      >>> idx = builder.draw(3)
      >>> idx["identities"].shape, builder.num_classes
      ((3, 4, 2), 10)

    Args:
      teacher: the easy :class:`SampleSet`.
      students: the hard sets, one per student distribution (K >= 1).
      b: pairs (and identity-distinct samples) per distribution; the GLOBAL count under a strategy.
      seed: seeds every draw.
      student_pairs: ``easy-hard`` (an easy and a hard image of one identity; A8) or ``hard-hard``.
      drop_unpaired: leave identities without a possible positive pair out of the pair draws
        (logged) instead of raising :class:`DataError`.
    """

    def __init__(self, teacher: SampleSet, students: Sequence[SampleSet], b: int, seed: int = 0,
                 student_pairs: str = "easy-hard", drop_unpaired: bool = False):
        if isinstance(b, bool) or not isinstance(b, int | np.integer) or b < 2:
            raise ConfigError(f"b: pairs per distribution must be an integer >= 2, got {b!r}")
        if student_pairs not in STUDENT_PAIRS:
            raise ConfigError(f"student_pairs: {student_pairs!r} is not one of {list(STUDENT_PAIRS)}")
        students = list(students)
        if not students:
            raise ConfigError("students: DDL needs at least one hard subset (student distribution)")
        self.teacher, self.students, self.b, self.seed = teacher, students, int(b), int(seed)
        self.student_pairs = student_pairs
        branches = [teacher, *students]
        names = [s.name for s in branches]
        if len(set(names)) != len(names):
            raise ConfigError(f"branches: names must differ, got {names}")
        shapes = {s.images.shape[1:] for s in branches}
        if len(shapes) != 1:
            raise DataError(f"branches: image shapes differ: { {s.name: s.images.shape[1:] for s in branches} }")
        # one image bank: teacher images first, then each student's
        self.offsets = np.cumsum([0] + [len(s) for s in branches])[:-1]
        self.images = np.concatenate([s.images for s in branches])
        all_ids = np.unique(np.concatenate([s.labels for s in branches]))
        self.class_ids = all_ids  # classifier class c <-> identity class_ids[c]
        self.bank_labels = np.searchsorted(all_ids, np.concatenate([s.labels for s in branches]))
        for s in branches:
            if len(s.identities) < self.b:
                raise DataError(f"{s.name}: {len(s.identities)} identities, fewer than b={self.b}: the b negatives "
                                f"of a distribution must be distinct identities")
        self._by_id = [self._group(s) for s in branches]
        self._pairs = [self._pair_pool(teacher, teacher, teacher.name, drop_unpaired)]
        for s in students:
            first = teacher if student_pairs == "easy-hard" else s
            self._pairs.append(self._pair_pool(first, s, s.name, drop_unpaired))

    @property
    def num_branches(self) -> int:
        return 1 + len(self.students)

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    @property
    def names(self) -> list[str]:
        return [self.teacher.name] + [s.name for s in self.students]

    @staticmethod
    def _group(s: SampleSet) -> dict[int, np.ndarray]:
        order = np.argsort(s.labels, kind="stable")
        ids, starts = np.unique(s.labels[order], return_index=True)
        return {int(i): g for i, g in zip(ids, np.split(order, starts[1:]), strict=True)}

    @staticmethod
    def _pair_pool(first: SampleSet, second: SampleSet, name: str, drop: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per identity of ``second``: all (i in first, j in second) of that identity with different
        sources (and i < j when first is second)."""
        a_by, b_by = DDLBatchBuilder._group(first), DDLBatchBuilder._group(second)
        pool, missing = [], []
        for ident, jb in b_by.items():
            ia = a_by.get(ident, np.zeros(0, np.int64))
            ii, jj = np.meshgrid(ia, jb, indexing="ij")
            ii, jj = ii.ravel(), jj.ravel()
            ok = first.source[ii] != second.source[jj]
            if first is second:
                ok &= ii < jj
            if ok.any():
                pool.append((ii[ok], jj[ok]))
            else:
                missing.append((ident, len(ia), len(jb)))
        if missing:
            ident, na, nb = missing[0]
            where = (f"{name}: identity {ident} has {nb} image(s)" if first is second else
                     f"{name}: identity {ident} has {na} easy and {nb} hard image(s) with distinct sources")
            if not drop:
                raise DataError(f"{where}; a positive pair needs two ({len(missing)} identities lack one; "
                                f"drop_unpaired=True leaves them out of the pairs)")
            log.info("%s: %d identities without a positive pair left out of the pair draws", name, len(missing))
        if not pool:
            raise DataError(f"{name}: no identity has the two images a positive pair needs")
        return pool

    def draw(self, steps: int, seed: int | None = None) -> dict[str, np.ndarray]:
        """Bank indices ``identities``, ``pair_a``, ``pair_b`` and classifier labels ``labels_identities``,
        ``labels_pairs``: each ``[steps, b, K+1]``."""
        rng = np.random.default_rng(self.seed if seed is None else seed)
        k1, b = self.num_branches, self.b
        out = {n: np.empty((steps, b, k1), np.int64) for n in ("identities", "pair_a", "pair_b")}
        first_off = [self.offsets[0]] + [self.offsets[0] if self.student_pairs == "easy-hard" else o
                                         for o in self.offsets[1:]]
        for t in range(steps):
            for k in range(k1):
                groups = self._by_id[k]
                ids = rng.choice(np.fromiter(groups, np.int64), b, replace=False)  # b distinct identities
                out["identities"][t, :, k] = [self.offsets[k] + rng.choice(groups[int(i)]) for i in ids]
                pool = self._pairs[k]
                who = rng.choice(len(pool), b, replace=len(pool) < b)
                for r, w in enumerate(who):
                    ia, jb = pool[w]
                    c = rng.integers(len(ia))
                    out["pair_a"][t, r, k] = first_off[k] + int(ia[c])  # the easy image of an easy-hard pair
                    out["pair_b"][t, r, k] = self.offsets[k] + int(jb[c])
        out["labels_identities"] = self.bank_labels[out["identities"]]
        out["labels_pairs"] = self.bank_labels[out["pair_a"]]
        for t in range(steps):
            check_ddl_batch(out["labels_identities"][t], out["labels_pairs"][t], self.bank_labels[out["pair_b"][t]],
                            self.names)
        return out

    def dataset(self, steps: int, seed: int | None = None, preprocessing: str = "arcface", flip: bool = True,
                strategy=None):
        """A ``tf.data.Dataset`` of ``steps`` batches ``(x, y)`` (see the module docstring); ``flip``
        mirrors each image with probability 1/2 (seeded)."""
        import tensorflow as tf

        from tfface.data.pipeline import preprocess

        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ConfigError(f"steps: must be a positive integer, got {steps!r}")
        if strategy is not None and self.b % strategy.num_replicas_in_sync:
            raise ConfigError(f"b: {self.b} pairs per distribution do not divide over "
                              f"{strategy.num_replicas_in_sync} replicas")
        idx = self.draw(int(steps), seed)
        bank = tf.constant(self.images)
        base_seed = int(self.seed if seed is None else seed)

        def gather(i, li, lp, r):
            x = {}
            for n, key in enumerate(("identities", "pair_a", "pair_b")):
                im = tf.cast(tf.gather(bank, i[key]), tf.float32)  # [b, K+1, H, W, 3]
                if flip:
                    s = tf.stack([r, tf.constant(base_seed + n, tf.int64)])
                    f = tf.random.stateless_uniform(tf.shape(im)[:2], s) < 0.5
                    im = tf.where(f[:, :, None, None, None], tf.reverse(im, axis=[3]), im)
                x[key] = preprocess(im, preprocessing)
            return x, {"identities": li, "pairs": lp}

        ids = {k: idx[k] for k in ("identities", "pair_a", "pair_b")}
        ds = tf.data.Dataset.from_tensor_slices((ids, idx["labels_identities"], idx["labels_pairs"],
                                                 tf.range(int(steps), dtype=tf.int64)))
        ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
        options = tf.data.Options()
        options.deterministic = True
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def make_split(images: np.ndarray, labels: np.ndarray, spec, yaw: np.ndarray | None = None
               ) -> tuple[SampleSet, list[SampleSet]]:
    """(easy, hard subsets) of a labelled image set by ``spec``; ``yaw`` is needed for ``pose``."""
    if spec.kind == "resolution":
        return resolution_split(images, labels, spec.factors)
    if yaw is None:
        raise DataError("split.kind pose: no per-image yaw (built-in faces record it; real data needs "
                        "split.attributes, a CSV with columns path, yaw)")
    return pose_split(images, labels, yaw, spec.easy_max_yaw, spec.hard_min_yaw)


