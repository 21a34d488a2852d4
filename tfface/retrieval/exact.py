"""The exact backend: top-k inner products by batched matrix products in TensorFlow.

It is the reference an approximate (ScaNN) search is measured against. Memory is bounded by
``query_batch x db_chunk`` scores; the database may be split over several blocks (e.g. a memory-mapped
base and an in-memory tail) and rows can be masked out (deleted entries).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tfface.errors import ConfigError, DataError

__all__ = ["ExactSearcher", "exact_top_k"]


def _positive(name: str, val: int) -> int:
    if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {val!r}")
    return int(val)


def exact_top_k(
    queries: np.ndarray,
    blocks: Sequence[np.ndarray],
    k: int,
    keep: np.ndarray | None = None,
    *,
    db_chunk: int = 32_768,
    query_batch: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of ``queries`` over the rows of ``blocks`` (concatenated), best first.

    Args:
        queries: ``[Q, D]`` float32.
        blocks: arrays ``[n_i, D]``; row numbers run through them in order.
        k: neighbours per query; rows beyond the database (or masked) come back as row ``-1``,
            score ``-inf``.
        keep: optional ``[sum n_i]`` bool mask; rows with ``False`` are never returned.
        db_chunk, query_batch: block sizes of the matrix products.

    Returns:
        ``(scores [Q, k] float32, rows [Q, k] int64)``. Equal scores keep the lower row first.
    """
    import tensorflow as tf

    k = _positive("k", k)
    db_chunk = _positive("db_chunk", db_chunk)
    query_batch = _positive("query_batch", query_batch)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    total = sum(int(b.shape[0]) for b in blocks)
    for b in blocks:
        if b.ndim != 2 or b.shape[1] != q.shape[1]:
            raise DataError(f"exact search: database block shape {b.shape} does not match queries {q.shape}")
    if keep is not None and keep.shape != (total,):
        raise DataError(f"exact search: keep mask shape {keep.shape} does not match {total} database rows")
    q_n = q.shape[0]
    out_s = np.full((q_n, k), -np.inf, dtype=np.float32)
    out_i = np.full((q_n, k), -1, dtype=np.int64)
    if total == 0 or q_n == 0:
        return out_s, out_i
    neg_inf = tf.constant(-np.inf, tf.float32)
    for q0 in range(0, q_n, query_batch):
        qt = tf.constant(q[q0 : q0 + query_batch])
        best_s = tf.fill([qt.shape[0], 0], neg_inf)
        best_i = tf.zeros([qt.shape[0], 0], tf.int64)
        offset = 0
        for block in blocks:
            n_b = int(block.shape[0])
            for c0 in range(0, n_b, db_chunk):
                c1 = min(c0 + db_chunk, n_b)
                chunk = tf.constant(np.asarray(block[c0:c1], dtype=np.float32))
                s = tf.linalg.matmul(qt, chunk, transpose_b=True)
                if keep is not None:
                    mask = keep[offset + c0 : offset + c1]
                    if not mask.all():
                        s = tf.where(tf.constant(mask)[None, :], s, neg_inf)
                rows = tf.range(offset + c0, offset + c1, dtype=tf.int64)
                kk = min(k, c1 - c0)
                top_s, top_j = tf.math.top_k(s, k=kk, sorted=True)
                cand_s = tf.concat([best_s, top_s], axis=1)
                cand_i = tf.concat([best_i, tf.gather(rows, top_j)], axis=1)
                m = min(k, int(cand_s.shape[1]))
                sel_s, sel_j = tf.math.top_k(cand_s, k=m, sorted=True)  # ties: earlier (lower) rows first
                best_s, best_i = sel_s, tf.gather(cand_i, sel_j, batch_dims=1)
            offset += n_b
        m = int(best_s.shape[1])
        s_np, i_np = best_s.numpy(), best_i.numpy()
        i_np = np.where(np.isfinite(s_np), i_np, -1)
        out_s[q0 : q0 + qt.shape[0], :m] = s_np
        out_i[q0 : q0 + qt.shape[0], :m] = i_np
    return out_s, out_i


class ExactSearcher:
    """Exact maximum-inner-product search over a fixed database, in TensorFlow.

    Example:
        >>> import numpy as np
        >>> db = np.eye(4, dtype=np.float32)
        >>> scores, rows = ExactSearcher(db).search(db[:2], k=1)
        >>> rows.ravel().tolist()
        [0, 1]
    """

    def __init__(self, database: np.ndarray, *, db_chunk: int = 32_768, query_batch: int = 1024) -> None:
        db = np.asarray(database)
        if db.ndim != 2 or db.dtype.kind != "f":
            raise DataError(f"exact search: expected a float [N, D] database, got {db.dtype} {db.shape}")
        self.database = db
        self.db_chunk = _positive("db_chunk", db_chunk)
        self.query_batch = _positive("query_batch", query_batch)

    def search(self, queries: np.ndarray, k: int, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [Q, k], rows [Q, k])`` of the ``k`` highest inner products, best first."""
        return exact_top_k(
            queries, [self.database], k, keep, db_chunk=self.db_chunk, query_batch=self.query_batch
        )
