"""The linear baseline of feature translation (not in the paper): ridge least squares ``Y ~ X W + b``.

R3AN's paper compares against an FC network only; a closed-form linear map is the baseline a user
would try first, and on the built-in presets and on real models it beats every trained translator
at a few thousand triplets (``docs/methods/r3an.md``). Its one knob is the ridge ``lambda`` in
``min |X W + b - Y|^2 + lambda N |W|^2`` (``lambda`` relative to the number of rows ``N``, so one
value suits any set size). :func:`select_ridge` chooses it by identity-grouped K-fold
cross-validation: the folds split identities, never images of one person, since a translator is
used on people it has never seen; the score is the mean cosine between translated and true target
features on the held-out fold.

Example:
  >>> import numpy as np
  >>> rng = np.random.default_rng(0)
  >>> x = rng.normal(size=(400, 8)); y = x @ rng.normal(size=(8, 6)) + 0.1 * rng.normal(size=(400, 6))
  >>> choice = select_ridge(x, y, labels=np.arange(400) // 4)
  >>> choice["ridge"] in choice["grid"], len(choice["scores"]) == len(choice["grid"])
  (True, True)
"""

from __future__ import annotations

import keras
import numpy as np

from tfface.errors import ConfigError, DataError
from tfface.signatures import SOURCE_FEATURES, TARGET_FEATURES

__all__ = ["RIDGE_GRID", "fit_linear_translator", "select_ridge"]

#: The ridges :func:`select_ridge` tries (relative to the number of rows).
RIDGE_GRID = tuple(float(x) for x in np.logspace(-6, 0, 13))


def _unit(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim != 2:
        raise DataError(f"{name} features must be 2-D (N, D), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError(f"{name} features contain NaN or Inf (first bad row {int(np.where(~np.isfinite(x).all(1))[0][0])})")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _augmented(source, target) -> tuple[np.ndarray, np.ndarray]:
    x = _unit(np.asarray(source, np.float64), "source")
    y = _unit(np.asarray(target, np.float64), "target")
    if len(x) != len(y):
        raise DataError(f"linear translator: {len(x)} source rows but {len(y)} target rows")
    return np.concatenate([x, np.ones((len(x), 1))], axis=1), y


def _solve(xtx: np.ndarray, xty: np.ndarray, ridge: float, n: int) -> np.ndarray:
    reg = ridge * n * np.eye(xtx.shape[0])
    reg[-1, -1] = 0.0  # the bias is not shrunk
    return np.linalg.solve(xtx + reg, xty)


def select_ridge(source: np.ndarray, target: np.ndarray, labels: np.ndarray, folds: int = 5,
                 grid: tuple[float, ...] = RIDGE_GRID, seed: int = 0) -> dict:
    """Identity-grouped K-fold choice of the ridge (see the module docstring).

    Returns ``{"ridge", "grid", "scores" (mean held-out cosine per ridge), "folds"}``. The Gram matrices
    are accumulated once per fold, so the whole grid costs ``folds x len(grid)`` small solves."""
    xa, y = _augmented(source, target)
    labels = np.asarray(labels)
    if len(labels) != len(xa):
        raise DataError(f"select_ridge: {len(xa)} rows but {len(labels)} labels")
    ids = np.unique(labels)
    if not 2 <= folds <= len(ids):
        raise ConfigError(f"folds: need 2 <= folds <= the {len(ids)} identities, got {folds}")
    if not grid or min(grid) < 0:
        raise ConfigError(f"ridge grid: need non-negative values, got {grid}")
    fold_of_id = np.random.default_rng(seed).permutation(len(ids)) % folds
    fold = fold_of_id[np.searchsorted(ids, labels)]
    xtx, xty = xa.T @ xa, xa.T @ y
    scores = np.zeros(len(grid))
    for k in range(folds):
        held = fold == k
        xh, yh = xa[held], y[held]
        a, b = xtx - xh.T @ xh, xty - xh.T @ yh
        for j, ridge in enumerate(grid):
            pred = xh @ _solve(a, b, ridge, int((~held).sum()))
            pred /= np.maximum(np.linalg.norm(pred, axis=1, keepdims=True), 1e-12)
            scores[j] += float((pred * yh).sum(1).sum())
    scores /= len(xa)
    best = int(np.argmax(scores))
    return {"ridge": float(grid[best]), "grid": [float(g) for g in grid], "scores": scores.round(6).tolist(),
            "folds": int(folds)}


def fit_linear_translator(source: np.ndarray, target: np.ndarray, ridge: float = 1e-3,
                          name: str = "linear_translator") -> keras.Model:
    """Ridge least squares ``Y ~ X W + b`` on L2-normalised features, solved in closed form, returned as
    a Keras translator with the same input/output names as :meth:`R3AN.translator` (output
    L2-normalised). ``ridge`` is relative to the number of rows (see the module docstring)."""
    xa, y = _augmented(source, target)
    w = _solve(xa.T @ xa, xa.T @ y, ridge, len(xa))
    x_in = keras.Input((xa.shape[1] - 1,), name=SOURCE_FEATURES)
    dense = keras.layers.Dense(y.shape[1], name="linear")
    h = dense(keras.layers.UnitNormalization()(x_in))
    dense.set_weights([w[:-1].astype(np.float32), w[-1].astype(np.float32)])
    out = keras.layers.UnitNormalization(dtype="float32", name=TARGET_FEATURES)(h)
    return keras.Model(x_in, out, name=name)
