"""FTL's evaluation (spec 8.2 metrics, the paper's Table 1 columns and Fig. 1 / Fig. 4a analyses).

- :func:`closed_set`: top-1 of FC's argmax on the held-out test images, split regular / UR, and the
  share of UR test images predicted as a regular class (the bias's symptom);
- :func:`nn_rank1`: the paper's "MS1M NN": gallery = the mean ``f`` over each class's training images,
  cosine nearest neighbour, split regular / UR;
- :func:`weight_bias`: ``rho = mean_reg ||w_j|| / mean_UR ||w_j||`` and the Spearman correlation of
  ``||w_j||`` with the class's training-image count (Fig. 1b);
- :func:`unseen_verification`: 10-fold best-threshold accuracy on genuine / impostor pairs of unseen
  identities (the LFW analogue; on ``f`` and on ``g``, Table 1's two LFW columns);
- :func:`evaluate_networks`: all of the above for one trained network on a long-tailed set;
- :func:`centre_errors`: Fig. 4a: the distance of a centre estimated from ``n`` images (PickOne, AvgAll,
  AvgFlip = Eq. 5) to the centre of all of a class's images, over the mean distance between class centres.
"""

from __future__ import annotations

import numpy as np

from tfface.errors import DataError
from tfface.eval.pairs import l2_normalize, make_pairs
from tfface.eval.verification import verification_scores

__all__ = ["centre_errors", "closed_set", "evaluate_networks", "nn_rank1", "spearman", "unseen_verification", "weight_bias"]


def _split(hit: np.ndarray, labels: np.ndarray, num_regular: int) -> dict:
    reg = labels < num_regular
    return {"regular": float(hit[reg].mean()) if reg.any() else None,
            "ur": float(hit[~reg].mean()) if (~reg).any() else None}


def closed_set(logits, labels, num_regular: int) -> dict:
    """``{"top1/regular", "top1/ur", "ur_to_regular"}`` from test logits."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    pred = logits.argmax(1)
    s = _split(pred == labels, labels, num_regular)
    ur = labels >= num_regular
    return {"top1/regular": s["regular"], "top1/ur": s["ur"],
            "ur_to_regular": float((pred[ur] < num_regular).mean()) if ur.any() else None}


def nn_rank1(f_train, y_train, f_test, y_test, num_classes: int, num_regular: int) -> dict:
    """``{"nn/regular", "nn/ur"}``: cosine rank-1 against per-class mean training features."""
    f_train, f_test = l2_normalize(np.asarray(f_train, np.float64)), l2_normalize(np.asarray(f_test, np.float64))
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    gallery = np.zeros((num_classes, f_train.shape[1]))
    np.add.at(gallery, y_train, f_train)
    missing = np.flatnonzero(np.bincount(y_train, minlength=num_classes) == 0)
    if len(missing):
        raise DataError(f"nn_rank1: class {int(missing[0])} has no training image for its gallery centre")
    pred = (f_test @ l2_normalize(gallery).T).argmax(1)
    s = _split(pred == y_test, y_test, num_regular)
    return {"nn/regular": s["regular"], "nn/ur": s["ur"]}


def spearman(a, b) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant.

    Hand-written (ten lines) rather than importing SciPy, which tfface does not otherwise depend on."""
    def ranks(v):
        v = np.asarray(v, np.float64)
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=np.float64)
        _, inv, counts = np.unique(v, return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=r)
        return sums[inv] / counts[inv]

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def weight_bias(weights, counts, num_regular: int) -> dict:
    """``{"rho", "spearman"}`` of FC's rows ``w_j`` ([N_c, D]) against the training counts."""
    norms = np.linalg.norm(np.asarray(weights, np.float64), axis=1)
    counts = np.asarray(counts)
    rho = float(norms[:num_regular].mean() / norms[num_regular:].mean()) if len(norms) > num_regular else None
    return {"rho": rho, "spearman": spearman(norms, counts) if len(norms) > num_regular else None}


def unseen_verification(features, labels, pairs: int = 3000, seed: int = 0) -> float:
    """10-fold best-threshold accuracy on ``pairs`` genuine and as many impostor pairs (cosine)."""
    labels = np.asarray(labels)
    counts = np.bincount(np.unique(labels, return_inverse=True)[1])
    pairs = int(min(pairs, (counts * (counts - 1) // 2).sum()))
    i, j, same = make_pairs(labels, pairs, pairs, seed=seed)
    f = l2_normalize(np.asarray(features, np.float64))
    return float(verification_scores((f[i] * f[j]).sum(1), same).accuracy)


def centre_errors(g, g_flip, labels, sizes=(1, 5, 10, 20), seed: int = 0, pools: dict | None = None) -> dict:
    """``{"<method>/<n>": error}`` for PickOne, AvgAll and AvgFlip from ``n`` images per class.

    The ground truth is each class's mean over all its images; the error is the mean distance of the
    estimate to it over the classes, divided by the mean pairwise distance between class centres
    ("normalized by the inter-class variance"). ``pools``: per class, the rows the ``n`` images are drawn
    from (default: all of them; e.g. one side's poses for the biased test)."""
    g, g_flip, labels = np.asarray(g, np.float64), np.asarray(g_flip, np.float64), np.asarray(labels)
    classes = np.unique(labels)
    truth = np.stack([g[labels == c].mean(0) for c in classes])
    diff = truth[:, None] - truth[None]
    scale = np.sqrt((diff ** 2).sum(-1))[~np.eye(len(classes), dtype=bool)].mean()
    rng = np.random.default_rng(seed)
    out = {}
    for n in sizes:
        errs = {"pick_one": [], "avg_all": [], "avg_flip": []}
        for k, c in enumerate(classes):
            rows = (pools or {}).get(int(c), np.flatnonzero(labels == c))
            pick = rng.choice(rows, min(n, len(rows)), replace=False)
            errs["pick_one"].append(np.linalg.norm(g[pick[0]] - truth[k]))
            errs["avg_all"].append(np.linalg.norm(g[pick].mean(0) - truth[k]))
            errs["avg_flip"].append(np.linalg.norm((g[pick] + g_flip[pick]).mean(0) / 2 - truth[k]))
        out |= {f"{m}/{n}": float(np.mean(v) / scale) for m, v in errs.items()}
    return out


def evaluate_networks(nets, data: dict, pairs: int = 3000, seed: int = 0) -> dict:
    """Every FTL metric of one network on a long-tailed set (flat ``{metric: value}``)."""
    n_reg, n = data["num_regular"], data["num_classes"]
    _, f_train = nets.features(data["train_x"])
    g_test, f_test = nets.features(data["test_x"])
    logits = np.asarray(nets.fc.predict(f_test, batch_size=1024, verbose=0))
    out = closed_set(logits, data["test_y"], n_reg)
    out |= nn_rank1(f_train, data["train_y"], f_test, data["test_y"], n, n_reg)
    out |= weight_bias(nets.class_weights(), data["counts"], n_reg)
    if "unseen_x" in data:
        g_u, f_u = nets.features(data["unseen_x"])
        out["verification/f"] = unseen_verification(f_u, data["unseen_y"], pairs, seed)
        out["verification/g"] = unseen_verification(g_u, data["unseen_y"], pairs, seed)
    return out
