"""Verification pairs, and the input checks every protocol in ``tfface.eval`` shares.

``make_pairs`` draws LFW-style (index1, index2, issame) lists from a labelled set. The
``check_*`` helpers turn user arrays into validated numpy arrays and raise
:class:`~tfface.errors.DataError` naming the argument and the shape at fault; ``l2_normalize``
and ``pair_scores`` give the cosine similarity used by every protocol.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from tfface.errors import ConfigError, DataError

__all__ = [
    "check_features",
    "check_issame",
    "check_labels",
    "check_ranks",
    "check_same_dim",
    "check_scores",
    "l2_normalize",
    "make_pairs",
    "pair_scores",
]


def check_features(x: ArrayLike, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """Return ``x`` as a finite 2-D float array ``[N, D]`` or raise ``DataError`` naming ``name``.

    float32 input stays float32; any other numeric input becomes float64.
    """
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:  # ragged lists
        raise DataError(f"{name}: cannot be read as an array ({err})") from err
    if arr.dtype.kind not in "biuf":
        raise DataError(
            f"{name}: expected a numeric [N, D] array, got dtype {arr.dtype} with shape {arr.shape}"
        )
    if arr.ndim != 2:
        raise DataError(f"{name}: expected a 2-D array [N, D], got shape {arr.shape}")
    if arr.shape[1] == 0 or (arr.shape[0] == 0 and not allow_empty):
        raise DataError(f"{name}: is empty, shape {arr.shape}")
    arr = arr.astype(np.float32 if arr.dtype == np.float32 else np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise DataError(f"{name}: contains NaN or Inf (first at row {row}; shape {arr.shape})")
    return arr


def check_same_dim(a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    """Raise ``DataError`` unless two feature arrays have the same dimension ``D``."""
    if a.shape[1] != b.shape[1]:
        raise DataError(
            f"{b_name}: feature dimension {b.shape[1]} does not match {a_name} dimension {a.shape[1]} "
            f"({a_name} shape {a.shape}, {b_name} shape {b.shape})"
        )


def check_labels(
    labels: ArrayLike, name: str, n: int | None = None, features_name: str = "features"
) -> np.ndarray:
    """Return ``labels`` as a 1-D array of length ``n`` (rows of ``features_name``) or raise ``DataError``."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-D array of labels, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise DataError(f"{name}: length {arr.shape[0]} does not match the {n} rows of {features_name}")
    if arr.shape[0] == 0:
        raise DataError(f"{name}: is empty, shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{name}: contains NaN or Inf labels (shape {arr.shape})")
    if arr.dtype.kind not in "biufUS":
        raise DataError(
            f"{name}: labels must be integers or strings, got dtype {arr.dtype} (shape {arr.shape})"
        )
    return arr


def check_scores(scores: ArrayLike, name: str = "scores") -> np.ndarray:
    """Return ``scores`` as a finite, non-empty 1-D float64 array or raise ``DataError``."""
    arr = np.asarray(scores)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{name}: expected numeric scores, got dtype {arr.dtype} with shape {arr.shape}")
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise DataError(f"{name}: is empty, shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise DataError(
            f"{name}: contains NaN or Inf (first at index {int(np.argmax(bad))}; shape {arr.shape})"
        )
    return arr


def check_issame(issame: ArrayLike, n: int, name: str = "issame", scores_name: str = "scores") -> np.ndarray:
    """Return ``issame`` as a 1-D bool array of length ``n`` (booleans or 0/1) or raise ``DataError``."""
    arr = np.asarray(issame)
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise DataError(f"{name}: length {arr.shape[0]} does not match the {n} entries of {scores_name}")
    if arr.dtype != bool:
        if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
            raise DataError(f"{name}: expected booleans or 0/1 values (shape {arr.shape}, dtype {arr.dtype})")
        arr = arr.astype(bool)
    return arr


def l2_normalize(x: np.ndarray, name: str = "features") -> np.ndarray:
    """Divide each row by its L2 norm; a zero row raises ``DataError`` (its cosine is undefined)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        raise DataError(
            f"{name}: row {int(np.argmax(zero))} has zero norm (shape {x.shape}); cosine is undefined"
        )
    return x / norms


def pair_scores(emb1: ArrayLike, emb2: ArrayLike, name1: str = "emb1", name2: str = "emb2") -> np.ndarray:
    """Cosine similarity of row ``i`` of ``emb1`` with row ``i`` of ``emb2``: ``<e1/|e1|, e2/|e2|>``."""
    a = check_features(emb1, name1)
    b = check_features(emb2, name2)
    check_same_dim(a, name1, b, name2)
    if a.shape[0] != b.shape[0]:
        raise DataError(
            f"{name2}: {b.shape[0]} rows do not match the {a.shape[0]} rows of {name1} "
            f"({name1} shape {a.shape}, {name2} shape {b.shape})"
        )
    return np.einsum("ij,ij->i", l2_normalize(a, name1), l2_normalize(b, name2)).astype(np.float64)


def _check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ConfigError(f"{name}: expected a non-negative integer, got {value!r}")
    return int(value)


def _sample_unique_pairs(draw, n_wanted: int, n_items: int, rng: np.random.Generator) -> np.ndarray:
    """Draw batches of (i, j), i < j, with ``draw(rng, size)`` until ``n_wanted`` distinct pairs are found."""
    keys = np.empty(0, dtype=np.int64)
    while keys.size < n_wanted:
        i, j = draw(rng, max(2 * (n_wanted - keys.size), 64))
        new = np.minimum(i, j).astype(np.int64) * n_items + np.maximum(i, j)
        _, first = np.unique(np.concatenate([keys, new]), return_index=True)
        keys = np.concatenate([keys, new])[np.sort(first)]  # keep draw order, drop repeats
    return keys[:n_wanted]


def make_pairs(
    labels: ArrayLike, n_positive: int, n_negative: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample distinct verification pairs from a labelled set, deterministically from ``seed``.

    Positive pairs are uniform over all same-identity pairs ``(i, j), i < j``; negative pairs uniform
    over all different-identity pairs. There are no self-pairs and no repeated pairs. The returned
    pairs are shuffled together (seeded), so the contiguous 10 folds of ``verification`` each
    hold both kinds.

    Returns:
        ``(idx1, idx2, issame)``: int64 index arrays with ``idx1 < idx2`` and a bool array.

    Raises:
        DataError: ``labels`` cannot make ``n_positive`` distinct positive pairs (no identity with
            two images, or too few pairs) or ``n_negative`` negative pairs (a single identity).
    """
    lab = check_labels(labels, "labels")
    n_positive = _check_count(n_positive, "n_positive")
    n_negative = _check_count(n_negative, "n_negative")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError(f"seed: expected an integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    _, ids = np.unique(lab, return_inverse=True)
    n = lab.shape[0]
    counts = np.bincount(ids)
    pair_counts = counts * (counts - 1) // 2
    total_pos = int(pair_counts.sum())
    total_neg = n * (n - 1) // 2 - total_pos
    if n_positive > total_pos:
        raise DataError(
            f"labels: {n_positive} positive pairs requested but the {counts.size} identities in labels "
            f"(shape {lab.shape}, at most {int(counts.max())} images each) make only {total_pos}"
        )
    if n_negative > total_neg:
        raise DataError(
            f"labels: {n_negative} negative pairs requested but labels (shape {lab.shape}, "
            f"{counts.size} identities) make only {total_neg}"
        )

    order = np.argsort(ids, kind="stable")  # indices grouped by identity
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def draw_pos(r: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        ident = r.choice(counts.size, size=size, p=pair_counts / total_pos)
        a = r.integers(0, counts[ident])
        b = r.integers(0, counts[ident] - 1)
        b = b + (b >= a)  # a different image of the same identity
        return order[starts[ident] + a], order[starts[ident] + b]

    def draw_neg(r: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        i = r.integers(0, n, size=size)
        j = r.integers(0, n, size=size)
        keep = ids[i] != ids[j]
        return i[keep], j[keep]

    def all_pos() -> np.ndarray:
        keys = []
        for c, s0 in zip(counts, starts, strict=True):
            members = order[s0 : s0 + c]
            a, b = np.triu_indices(int(c), 1)
            i, j = np.minimum(members[a], members[b]), np.maximum(members[a], members[b])
            keys.append(i.astype(np.int64) * n + j)
        return np.sort(np.concatenate(keys))

    def all_neg() -> np.ndarray:
        i, j = np.triu_indices(n, 1)
        keep = ids[i] != ids[j]
        return i[keep].astype(np.int64) * n + j[keep]

    def pick(wanted: int, total: int, draw, same: bool) -> np.ndarray:
        if wanted == 0:
            return np.empty(0, dtype=np.int64)
        if 2 * wanted > total:  # dense request: enumerate all pairs of the kind, choose without replacement
            return rng.choice(all_pos() if same else all_neg(), size=wanted, replace=False)
        return _sample_unique_pairs(draw, wanted, n, rng)

    keys = np.concatenate(
        [pick(n_positive, total_pos, draw_pos, True), pick(n_negative, total_neg, draw_neg, False)]
    )
    issame = np.concatenate([np.ones(n_positive, bool), np.zeros(n_negative, bool)])
    perm = rng.permutation(keys.size)
    keys, issame = keys[perm], issame[perm]
    return keys // n, keys % n, issame


def check_ranks(values: Sequence[int] | int, name: str = "ranks") -> tuple[int, ...]:
    """Return positive integer ranks sorted and without repeats, or raise ``ConfigError`` naming ``name``."""
    if isinstance(values, int | np.integer) and not isinstance(values, bool):
        values = (values,)
    try:
        vals = list(values)
    except TypeError as err:
        raise ConfigError(f"{name}: expected positive integers, got {values!r}") from err
    if not vals or any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in vals):
        raise ConfigError(f"{name}: expected positive integers, got {values!r}")
    return tuple(sorted({int(v) for v in vals}))
