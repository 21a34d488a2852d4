"""WSGAN's density scoring over a gallery :class:`~tfface.retrieval.Index`: sample, search, aggregate.

A weak query's ``m`` generated strong-space features each search the index for ``candidates``
neighbours; the union of those ids is rescored exactly by the Parzen window of all ``m`` samples
(:func:`tfface.methods.wsgan.scoring.parzen_scores`, on the stored normalised vectors), and the best
``k`` are returned. A gallery entry that none of the samples ranks among its ``candidates`` nearest
cannot win, so the result equals the exhaustive Parzen ranking whenever the kernel is narrow enough
for the density to be decided by nearby samples (raise ``candidates`` for wide kernels).

Example:
  >>> import numpy as np
  >>> from tfface.retrieval import Index
  >>> g = np.eye(4, dtype=np.float32)
  >>> index = Index.build(g, np.array([10, 11, 12, 13]), backend="exact")
  >>> samples = np.array([[[1, 0.1, 0, 0], [0.9, 0, 0.1, 0]]], np.float32)   # 1 query, m = 2
  >>> parzen_search(index, samples, sigma=0.3, k=2).ids[0].tolist()
  [10, 12]
"""

from __future__ import annotations

import numpy as np

from tfface.errors import ConfigError, DataError
from tfface.methods.wsgan.scoring import parzen_scores
from tfface.retrieval.index import Index, SearchResult

__all__ = ["parzen_search"]


def parzen_search(index: Index, samples: np.ndarray, sigma: float, k: int = 10, candidates: int = 50) -> SearchResult:
    """Top-``k`` gallery ids per query by Parzen density over its samples (``[Q, m, D]``); scores are
    the log densities."""
    samples = np.asarray(samples, np.float32)
    if samples.ndim != 3 or samples.shape[1] < 1:
        raise DataError(f"samples must be (queries, m >= 1, D), got shape {samples.shape}")
    if samples.shape[2] != index.dim:
        raise DataError(f"samples are {samples.shape[2]}-D but the index holds {index.dim}-D vectors")
    if k < 1 or candidates < k:
        raise ConfigError(f"need 1 <= k <= candidates, got k={k}, candidates={candidates}")
    q, m, d = samples.shape
    flat = samples.reshape(-1, d)
    flat = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    hits = index.search(flat, k=min(candidates, len(index))).ids.reshape(q, -1)
    ids_out, scores_out = [], []
    for i in range(q):
        cand = np.unique(hits[i][hits[i] != (-1 if hits.dtype.kind in "iu" else "")])
        s = parzen_scores(samples[i:i + 1], index.get(cand), sigma)[0]
        order = np.argsort(-s, kind="stable")[:k]
        pad = k - len(order)
        ids_out.append(np.concatenate([cand[order], np.full(pad, -1 if cand.dtype.kind in "iu" else "", cand.dtype)]))
        scores_out.append(np.concatenate([s[order], np.full(pad, -np.inf, np.float32)]))
    return SearchResult(np.stack(ids_out), np.stack(scores_out).astype(np.float32))
