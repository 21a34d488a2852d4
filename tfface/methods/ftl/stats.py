"""FTL's statistics (paper Sec. 3.3-3.4, Algorithm 1's ``UpdateStats``) and the feature transfer (Eq. 7).

All of it is computed in NumPy over the WHOLE training set with the encoder in inference mode, once at
the start of every Stage 1, so it is the same however many replicas train (a strategy only changes who
computes the forward passes):

- :func:`class_centres`, Eq. 5: ``c_i = 1 / (2 |Omega_i|) sum_{k in Omega_i} (g_ik + g_bar_ik)``, the mean of
  every image and its horizontal flip over the near-frontal ones, ``Omega_i = {k : |p_ik| + |p_bar_ik| <=
  tau}`` (the flip's yaw is ``-p``, so the bound is ``2 |p| <= tau``); a class with no image in Omega
  falls back to all its images (spec A11);
- :func:`shared_covariance`, Eq. 6 read as a sum of outer products over the REGULAR classes only
  (Algorithm 1): ``V = sum_i sum_k (g_ik - c_i)(g_ik - c_i)^T`` with the non-flipped features;
- :func:`pca_basis`: ``Q``, the eigenvectors of ``V`` for the largest eigenvalues, K the smallest count
  keeping ``energy`` of the eigenvalue sum (the paper: 150 of 320 keep 95 %) or a fixed K;
- :func:`hard_samples`: ``h``, the regular samples farther from their centre than the class's mean
  (not squared) distance ``d_i``, in g-space (spec A24);
- :func:`transfer`, Eq. 7 (as corrected by the spec from Algorithm 1): ``g~ = c_{y_u} + Q Q^T (g_r - c_{y_r})``,
  a UR centre plus a regular sample's projected deviation from its own centre.

Example (the numbers of the spec's unit tests 3-5):
  >>> import numpy as np
  >>> from tfface.methods.ftl.stats import pca_basis, transfer
  >>> q, k = pca_basis(np.diag([4.0, 1.0, 0.0]), energy=0.95)
  >>> k, bool(np.allclose(q.T @ q, np.eye(k)))
  (2, True)
  >>> c = np.array([[0.0, 0, 0], [1, 1, 1]])
  >>> transfer(c, np.eye(3), g_r=np.array([[0.5, 0, 0]]), y_r=np.array([0]), y_u=np.array([1])).tolist()
  [[1.5, 1.0, 1.0]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfface.errors import ConfigError, DataError

__all__ = ["FTLStats", "class_centres", "hard_samples", "pca_basis", "shared_covariance", "transfer",
           "update_stats"]


@dataclass
class FTLStats:
    """What ``UpdateStats`` returns: centres ``C`` [N_c, D], the PCA basis ``Q`` [D, K], the hard list
    ``h`` (row indices into the training set), ``V`` and the number of regular samples it sums."""

    centres: np.ndarray
    basis: np.ndarray
    hard: np.ndarray
    covariance: np.ndarray
    regular_samples: int

    @property
    def components(self) -> int:
        return int(self.basis.shape[1])

    def padded_basis(self) -> np.ndarray:
        """``Q`` zero-padded to [D, D] (``Q Q^T`` unchanged), so a traced step keeps one shape as K varies."""
        d = self.basis.shape[0]
        out = np.zeros((d, d), np.float32)
        out[:, :self.components] = self.basis
        return out


def _check(g: np.ndarray, labels: np.ndarray, num_classes: int, name: str = "g") -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(g, np.float64)
    labels = np.asarray(labels)
    if g.ndim != 2 or len(g) != len(labels):
        raise DataError(f"{name}: need [N, D] features with N labels, got {g.shape} and {labels.shape}")
    if not np.isfinite(g).all():
        raise DataError(f"{name}: features contain NaN or Inf")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"labels: must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    return g, labels


def class_centres(g, g_flip, labels, num_classes: int, yaw=None, pose_threshold: float | None = None,
                  min_images: int = 2) -> np.ndarray:
    """Eq. 5 for every class: ``[num_classes, D]`` (module docstring). ``g_flip``: features of the
    horizontally flipped images (``None``: no flip averaging, the plain mean "AvgAll"); ``yaw`` (degrees)
    with ``pose_threshold`` (tau) restricts the sum to Omega. A class with fewer than ``min_images``
    images is an error (its centre would be one image: nothing to average over)."""
    g, labels = _check(g, labels, num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    few = np.flatnonzero(counts < min_images)
    if len(few):
        raise DataError(f"centre: class {int(few[0])} has {int(counts[few[0]])} training image(s); a flip-averaged "
                        f"centre (Eq. 5) needs at least {min_images} ({len(few)} such classes); drop them or give "
                        "them more images")
    both = g if g_flip is None else (g + _check(g_flip, labels, num_classes, "g_flip")[0]) / 2.0
    keep = np.ones(len(g), bool)
    if yaw is not None and pose_threshold is not None:
        yaw = np.asarray(yaw, np.float64)
        if yaw.shape != labels.shape:
            raise DataError(f"yaw: need one value per image ({labels.shape}), got {yaw.shape}")
        keep = 2.0 * np.abs(yaw) <= float(pose_threshold)
        # a class with no near-frontal image uses all of them (spec A11)
        empty = np.bincount(labels[keep], minlength=num_classes) == 0
        keep |= empty[labels]
    sums = np.zeros((num_classes, g.shape[1]))
    np.add.at(sums, labels[keep], both[keep])
    return sums / np.bincount(labels[keep], minlength=num_classes)[:, None]


def shared_covariance(g, labels, centres, regular) -> tuple[np.ndarray, int]:
    """Eq. 6 over the regular classes (boolean ``regular`` per class): ``(V [D, D], regular samples)``."""
    g, labels = _check(g, labels, len(centres))
    rows = np.asarray(regular, bool)[labels]
    if not rows.any():
        raise DataError("regular classes: none (every class is under-represented), so there is no intra-class "
                        "variance to transfer; FTL needs regular classes (data.num_regular)")
    dev = g[rows] - centres[labels[rows]]
    return dev.T @ dev, int(rows.sum())


def pca_basis(covariance, energy: float = 0.95, components: int | None = None) -> tuple[np.ndarray, int]:
    """``(Q [D, K], K)``: the top eigenvectors of ``V`` (orthonormal columns), K by the energy rule or fixed."""
    v = np.asarray(covariance, np.float64)
    d = v.shape[0]
    if components is not None and not 1 <= int(components) <= d:
        raise ConfigError(f"ftl.pca_components: K = {components} is larger than the feature size {d} (or < 1)")
    if not 0.0 < energy <= 1.0:
        raise ConfigError(f"ftl.energy: must be in (0, 1], got {energy}")
    vals, vecs = np.linalg.eigh((v + v.T) / 2.0)
    vals, vecs = np.clip(vals[::-1], 0.0, None), vecs[:, ::-1]
    if components is None:
        total = vals.sum()
        share = np.cumsum(vals) / total if total > 0 else np.ones(d)
        components = int(min(d, np.searchsorted(share, energy - 1e-12) + 1))
    return vecs[:, :int(components)], int(components)


def hard_samples(g, labels, centres, regular) -> np.ndarray:
    """``h``: rows of regular classes with ``||g - c_i|| > d_i`` (d_i: the class's mean distance)."""
    g, labels = _check(g, labels, len(centres))
    dist = np.linalg.norm(g - centres[labels], axis=1)
    n = len(centres)
    mean = np.bincount(labels, weights=dist, minlength=n) / np.maximum(np.bincount(labels, minlength=n), 1)
    return np.flatnonzero(np.asarray(regular, bool)[labels] & (dist > mean[labels]))


def transfer(centres, basis, g_r, y_r, y_u) -> np.ndarray:
    """Eq. 7 (batch form, row vectors): ``C[y_u] + (g_r - C[y_r]) Q Q^T``."""
    centres, basis = np.asarray(centres), np.asarray(basis)
    dev = np.asarray(g_r) - centres[np.asarray(y_r)]
    return centres[np.asarray(y_u)] + dev @ basis @ basis.T


def update_stats(g, g_flip, labels, regular, yaw=None, pose_threshold: float | None = None, energy: float = 0.95,
                 components: int | None = None) -> FTLStats:
    """Algorithm 1's ``UpdateStats`` on precomputed features (:class:`FTLStats`)."""
    regular = np.asarray(regular, bool)
    centres = class_centres(g, g_flip, labels, len(regular), yaw, pose_threshold)
    cov, n_reg = shared_covariance(g, labels, centres, regular)
    basis, _ = pca_basis(cov, energy, components)
    return FTLStats(centres.astype(np.float32), basis.astype(np.float32), hard_samples(g, labels, centres, regular),
                    cov, n_reg)
