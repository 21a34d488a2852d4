"""Distribution Distillation Loss (DDL): soft similarity histograms of easy (teacher) and hard (student)
samples, a divergence between them and an order loss.

Huang, Shen, Tai, Li, Liu, Li, Huang, Ji, "Distribution Distillation Loss: Generic Approach for
Improving Face Recognition from Hard Samples" (arXiv 2002.03662; ECCV 2020 as "Improving Face
Recognition from Hard Samples via Distribution Distillation Loss"). Equation numbers below are the
paper's.

For each distribution (index 0: the teacher, built from easy samples; 1..K: the students, from hard
samples) a batch holds b positive pairs and b samples of b distinct identities:

- Eq. 1, positive similarities ``s_i^+ = <F(x_i1), F(x_i2)>`` of the L2-normalised embeddings of each
  pair; pairs with ``s_i^+ <= positive_threshold`` (0) are outliers and get weight 0 (a mask, so
  shapes stay fixed);
- Eq. 2, hard-mined negative similarities ``s_i^- = max_{j != i} <F(x_i), F(x_j)>`` over the b
  distinct identities (``negative_mining="hard"``);
- Eqs. 3-4, soft histograms on R nodes ``t_r`` uniformly filling ``node_range`` with the Gaussian
  kernel ``delta_{i,r} = exp(-gamma (s_i - t_r)^2)``, normalised to sum 1 over the nodes (the
  authors' code; Eq. 3's ``1/|S|`` alone would not give a distribution);
- Eq. 5, ``L_KL = lambda_1 D(P^+ || Q^+) + lambda_2 D(P^- || Q^-)`` with ``D`` the KL divergence
  (teacher P, student Q); Eq. 7 sums it over the K students, keeping lambda_1 and lambda_2 as in Eq. 5
  and the authors' code;
- Eq. 6 / 7, the order loss ``L_order = -lambda_3 sum_{i, j in (p, q_1..q_K)} (E[S_i^+] - E[S_j^-])``
  over all (K+1)^2 ordered pairs of distributions, E the (masked) sample mean;
- ``L_DDL = L_KL + L_order`` (Eq. 7); the recognizer adds its ArcFace / CosFace loss (Eq. 8).

Ablation switches (the paper's Table 2): ``distance`` ``"kl"`` / ``"js"`` / ``"emd"``; the order loss
off with ``lambda_3 = 0`` (KL only) or the KL terms off with ``lambda_1 = lambda_2 = 0`` (order only);
``negative_mining`` ``"hard"`` (Eq. 2) or ``"random"`` (one random other identity per row);
``students`` ``"specific"`` (one student distribution per hard kind, Eq. 7) or ``"mixture"`` (all
students' similarities pooled into one student distribution).

Defaults and where the paper is silent (see ``docs/methods/ddl.md``): lambda_1, lambda_2, lambda_3 =
0.1, 0.02, 0.5 (paper); R = 2001 nodes on [-1, 1] (step 0.001, the authors' code's step on the
paper's range); gamma = 50 (sigma = 0.1, the authors' code); ``stop_teacher_grad=False``: gradients
flow through the teacher histogram as in the paper (its order-loss motivation, "the teacher
distribution may choose to approach the student distribution", needs them) and in the authors' code
(no ``detach``); ``True`` is an extra ablation that makes the teacher a fixed target per step.

Everything here is plain TensorFlow on tensors: no files, no strategy. The caller gathers a global
batch first when it runs under ``tf.distribute`` (see :class:`tfface.methods.ddl.DDL`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import tensorflow as tf

from tfface.errors import ConfigError

__all__ = [
    "DISTANCES",
    "NEGATIVE_MINING",
    "STUDENT_MODES",
    "DDLBranch",
    "DDLLossConfig",
    "DistributionDistillationLoss",
    "distribution_distance",
    "emd_1d",
    "histogram_nodes",
    "js_divergence",
    "kl_divergence",
    "masked_mean",
    "negative_similarities",
    "order_loss",
    "positive_similarities",
    "soft_histogram",
]

DISTANCES = ("kl", "js", "emd")
NEGATIVE_MINING = ("hard", "random")
STUDENT_MODES = ("specific", "mixture")
_KL_EPS = 1e-9  # added to both histograms inside the logarithms (the authors' code)


@dataclass(frozen=True)
class DDLLossConfig:
    """The DDL hyper-parameters, checked on construction (a :class:`ConfigError` names the field).

    Attributes:
      lambda_1: weight of the positive-pair divergence (Eq. 5), >= 0.
      lambda_2: weight of the negative-pair divergence (Eq. 5), >= 0.
      lambda_3: weight of the order loss (Eq. 6), >= 0.
      bins: R, the number of histogram nodes (Eq. 3), 2..100000.
      gamma: the Gaussian kernel's spread (Eq. 4), > 0.
      node_range: (t_1, t_R), within [-1, 1], t_1 < t_R.
      distance: ``kl`` (Eq. 5), ``js`` or ``emd`` (Table 2).
      negative_mining: ``hard`` (Eq. 2) or ``random`` (Table 2).
      students: ``specific`` (Eq. 7) or ``mixture`` (Table 2).
      positive_threshold: positive pairs with similarity at or below it are dropped (Sec. 3.1: 0).
      stop_teacher_grad: stop gradients through the teacher histogram and means (not the paper).
    """

    lambda_1: float = 0.1
    lambda_2: float = 0.02
    lambda_3: float = 0.5
    bins: int = 2001
    gamma: float = 50.0
    node_range: tuple[float, float] = (-1.0, 1.0)
    distance: str = "kl"
    negative_mining: str = "hard"
    students: str = "specific"
    positive_threshold: float = 0.0
    stop_teacher_grad: bool = False

    def __post_init__(self):
        for name in ("lambda_1", "lambda_2", "lambda_3", "gamma", "positive_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"{name}: expected a finite number, got {value!r}")
        for name in ("lambda_1", "lambda_2", "lambda_3"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or not 2 <= self.bins <= 100_000:
            raise ConfigError(f"bins: must be an integer in [2, 100000], got {self.bins!r}")
        if self.gamma <= 0:
            raise ConfigError(f"gamma: must be > 0, got {self.gamma}")
        try:
            lo, hi = (float(v) for v in self.node_range)
        except (TypeError, ValueError):
            raise ConfigError(f"node_range: expected two numbers (low, high), got {self.node_range!r}") from None
        if not -1.0 <= lo < hi <= 1.0:
            raise ConfigError(f"node_range: need -1 <= low < high <= 1, got {self.node_range!r}")
        if not -1.0 <= self.positive_threshold < 1.0:
            raise ConfigError(f"positive_threshold: must be in [-1, 1), got {self.positive_threshold}")
        if self.distance not in DISTANCES:
            raise ConfigError(f"distance: {self.distance!r} is not one of {list(DISTANCES)}")
        if self.negative_mining not in NEGATIVE_MINING:
            raise ConfigError(f"negative_mining: {self.negative_mining!r} is not one of {list(NEGATIVE_MINING)}")
        if self.students not in STUDENT_MODES:
            raise ConfigError(f"students: {self.students!r} is not one of {list(STUDENT_MODES)}")
        if not isinstance(self.stop_teacher_grad, bool):
            raise ConfigError(f"stop_teacher_grad: expected true or false, got {self.stop_teacher_grad!r}")


@dataclass(frozen=True)
class DDLBranch:
    """One distribution's embeddings: ``identities`` [b, D] of b distinct identities (the negatives'
    source, Eq. 2) and the positive pairs ``pair_a``, ``pair_b`` [b, D] (Eq. 1), row i with row i."""

    identities: tf.Tensor
    pair_a: tf.Tensor
    pair_b: tf.Tensor


# ------------------------------------------------------------------------------------ pieces
def histogram_nodes(bins: int = 2001, node_range: tuple[float, float] = (-1.0, 1.0)) -> tf.Tensor:
    """The R nodes ``t_1 .. t_R`` uniformly filling ``node_range``, step ``(high - low) / (R - 1)`` (Eq. 3)."""
    lo, hi = (float(v) for v in node_range)
    return tf.linspace(tf.constant(lo, tf.float32), tf.constant(hi, tf.float32), int(bins))


def soft_histogram(similarities: tf.Tensor, nodes: tf.Tensor, gamma: float,
                   weights: tf.Tensor | None = None, eps: float = 1e-12) -> tf.Tensor:
    """Differentiable histogram (Eqs. 3-4): ``h_r = sum_i w_i exp(-gamma (s_i - t_r)^2)``, then ``h / sum h``.

    Args:
      similarities: ``[n]`` similarities s_i.
      nodes: ``[R]`` nodes t_r (:func:`histogram_nodes`).
      gamma: the kernel spread, ``gamma = 1 / (2 sigma^2)``.
      weights: optional ``[n]`` 0/1 (or soft) weights; masked samples add nothing.
    Returns:
      ``[R]`` float32, summing to 1 (all zeros when every weight is 0).
    """
    s = tf.cast(tf.reshape(similarities, [-1]), tf.float32)
    kernel = tf.exp(-float(gamma) * tf.square(s[:, None] - tf.cast(nodes, tf.float32)[None, :]))  # Eq. 4
    if weights is not None:
        kernel = kernel * tf.cast(tf.reshape(weights, [-1]), tf.float32)[:, None]
    h = tf.reduce_sum(kernel, axis=0)  # Eq. 3 (before normalisation)
    return h / (tf.reduce_sum(h) + eps)


def _cosine(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    a = tf.math.l2_normalize(tf.cast(a, tf.float32), axis=-1)
    b = tf.math.l2_normalize(tf.cast(b, tf.float32), axis=-1)
    return tf.reduce_sum(a * b, axis=-1)


def positive_similarities(pair_a: tf.Tensor, pair_b: tf.Tensor, threshold: float = 0.0) -> tuple[tf.Tensor, tf.Tensor]:
    """Eq. 1: ``(s^+ [b], keep [b])``, the cosine of each pair and a 0/1 mask of ``s^+ > threshold``
    (Sec. 3.1: positive pairs with similarity below 0 are outliers and deleted)."""
    s = _cosine(pair_a, pair_b)
    return s, tf.cast(s > threshold, tf.float32)


def negative_similarities(identities: tf.Tensor, mining: str = "hard", seed: tf.Tensor | None = None) -> tf.Tensor:
    """``[b]`` negative similarities of b samples of b distinct identities.

    ``hard`` (Eq. 2): ``s_i^- = max_{j != i} <F(x_i), F(x_j)>``, the hardest negative of each row.
    ``random`` (Table 2's "Random"): row i pairs with ``j = (i + k_i) mod b``, ``k_i`` uniform in
    ``1..b-1`` from the stateless ``seed`` (shape [2]; the same seed gives the same pairs on every
    replica).
    """
    e = tf.math.l2_normalize(tf.cast(identities, tf.float32), axis=-1)
    gram = tf.matmul(e, e, transpose_b=True)
    b = tf.shape(gram)[0]
    if mining == "hard":
        return tf.reduce_max(gram - 4.0 * tf.eye(b, dtype=gram.dtype), axis=1)  # the diagonal drops below -1
    if mining == "random":
        seed = tf.zeros([2], tf.int64) if seed is None else tf.cast(seed, tf.int64)
        k = tf.random.stateless_uniform([b], seed, minval=1, maxval=tf.maximum(b, 2), dtype=tf.int32)
        j = tf.math.floormod(tf.range(b) + k, b)
        return tf.gather(gram, j, axis=1, batch_dims=1)
    raise ConfigError(f"negative_mining: {mining!r} is not one of {list(NEGATIVE_MINING)}")


def masked_mean(values: tf.Tensor, weights: tf.Tensor | None = None) -> tf.Tensor:
    """The sample mean E[S] (A14: sample mean, as the authors' code), over the weighted samples."""
    values = tf.cast(tf.reshape(values, [-1]), tf.float32)
    if weights is None:
        return tf.reduce_mean(values)
    w = tf.cast(tf.reshape(weights, [-1]), tf.float32)
    return tf.reduce_sum(values * w) / tf.maximum(tf.reduce_sum(w), 1.0)


def kl_divergence(p: tf.Tensor, q: tf.Tensor, eps: float = _KL_EPS) -> tf.Tensor:
    """``D_KL(P || Q) = sum_r P_r log(P_r / Q_r)`` (Eq. 5), with ``eps`` added to both (authors' code)."""
    p, q = p + eps, q + eps
    return tf.reduce_sum(p * (tf.math.log(p) - tf.math.log(q)))


def js_divergence(p: tf.Tensor, q: tf.Tensor, eps: float = _KL_EPS) -> tf.Tensor:
    """Jensen-Shannon divergence ``(KL(P || M) + KL(Q || M)) / 2``, ``M = (P + Q) / 2`` (Table 2's JS)."""
    m = 0.5 * (p + q)
    return 0.5 * (kl_divergence(p, m, eps) + kl_divergence(q, m, eps))


def emd_1d(p: tf.Tensor, q: tf.Tensor, step: float) -> tf.Tensor:
    """Earth mover's distance of two histograms on the same uniform nodes (Table 2's EMD): in one
    dimension ``W_1 = step * sum_r |CDF_P(t_r) - CDF_Q(t_r)|``, in units of similarity."""
    return float(step) * tf.reduce_sum(tf.abs(tf.cumsum(p) - tf.cumsum(q)))


def distribution_distance(p: tf.Tensor, q: tf.Tensor, distance: str = "kl", step: float = 0.001) -> tf.Tensor:
    """``D(P || Q)`` by name: ``kl`` (Eq. 5), ``js`` or ``emd``."""
    if distance == "kl":
        return kl_divergence(p, q)
    if distance == "js":
        return js_divergence(p, q)
    if distance == "emd":
        return emd_1d(p, q, step)
    raise ConfigError(f"distance: {distance!r} is not one of {list(DISTANCES)}")


def order_loss(positive_means: Sequence[tf.Tensor], negative_means: Sequence[tf.Tensor]) -> tf.Tensor:
    """Eq. 6 / 7 without lambda_3: ``-sum_i sum_j (E[S_i^+] - E[S_j^-])`` over all ordered pairs of
    distributions (teacher p, students q_1..q_K): (K+1)^2 terms. Minimising it raises every positive
    mean and lowers every negative mean."""
    terms = [mp - mn for mp in positive_means for mn in negative_means]
    return -tf.add_n(terms)


# ---------------------------------------------------------------------------------- the loss
class DistributionDistillationLoss:
    """``L_DDL`` (Eq. 7) of a teacher and K student distributions; see the module docstring.

    Not a ``keras.losses.Loss``: it reduces nothing over a batch and knows nothing of replicas. Call it
    with the GLOBAL batch's embeddings (all-gathered under a strategy); it returns the loss value of
    that batch and its parts.

    Example:
      >>> import numpy as np
      >>> rng = np.random.default_rng(0)
      >>> def branch():
      ...     e = rng.normal(size=(3, 8, 16)).astype("float32")
      ...     return DDLBranch(e[0], e[1], e[1] + 0.1 * e[2])
      >>> loss = DistributionDistillationLoss(DDLLossConfig(bins=201))
      >>> value, parts = loss(branch(), [branch(), branch()])
      >>> sorted(parts)[:4]
      ['kl_neg', 'kl_pos', 'order', 'student_1_neg_mean']

    Args:
      config: a :class:`DDLLossConfig` (or keyword arguments for one).
    """

    def __init__(self, config: DDLLossConfig | None = None, **kwargs):
        if config is not None and kwargs:
            raise ConfigError("DistributionDistillationLoss: pass a config or keyword arguments, not both")
        self.config = config if config is not None else DDLLossConfig(**kwargs)
        c = self.config
        self.nodes = histogram_nodes(c.bins, c.node_range)
        self.step = (float(c.node_range[1]) - float(c.node_range[0])) / (c.bins - 1)

    def get_config(self) -> dict:
        return asdict(self.config)

    def distribution(self, branch: DDLBranch, seed: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """Similarities, masks, histograms and means of one distribution."""
        c = self.config
        pos, keep = positive_similarities(branch.pair_a, branch.pair_b, c.positive_threshold)  # Eq. 1
        neg = negative_similarities(branch.identities, c.negative_mining, seed)  # Eq. 2
        return {"pos": pos, "pos_keep": keep, "neg": neg}

    def _summarise(self, pos, keep, neg) -> dict[str, tf.Tensor]:
        g = self.config.gamma
        return {
            "pos": pos, "pos_keep": keep, "neg": neg,
            "pos_hist": soft_histogram(pos, self.nodes, g, keep),  # Eqs. 3-4
            "neg_hist": soft_histogram(neg, self.nodes, g),
            "pos_mean": masked_mean(pos, keep),
            "neg_mean": masked_mean(neg),
        }

    def __call__(self, teacher: DDLBranch, students: Sequence[DDLBranch],
                 seed: tf.Tensor | None = None) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """``(L_DDL, parts)`` for one teacher and K >= 1 students.

        ``parts`` holds ``kl_pos`` and ``kl_neg`` (the summed divergences before lambda_1 / lambda_2,
        named ``kl_*`` whatever the distance), ``order`` (before lambda_3), and per distribution
        (``teacher``, ``student_k``) the positive/negative means, the soft histogram intersection
        ``sum_r min(P^+_r, P^-_r)`` of its own positive and negative histograms, and the raw
        similarities (``*_pos``, ``*_pos_keep``, ``*_neg``) for logging.
        """
        c = self.config
        if not students:
            raise ConfigError("students: DDL needs at least one student distribution")
        seeds = [None] * (len(students) + 1)
        if c.negative_mining == "random":
            base = tf.zeros([2], tf.int64) if seed is None else tf.cast(seed, tf.int64)
            seeds = [base + tf.constant([0, 7919 * k], tf.int64) for k in range(len(students) + 1)]
        raw = [self.distribution(b, s) for b, s in zip([teacher, *students], seeds, strict=True)]
        t = self._summarise(raw[0]["pos"], raw[0]["pos_keep"], raw[0]["neg"])
        if c.students == "mixture":  # one student distribution pooled from all hard kinds
            pooled = [self._summarise(tf.concat([r["pos"] for r in raw[1:]], 0),
                                      tf.concat([r["pos_keep"] for r in raw[1:]], 0),
                                      tf.concat([r["neg"] for r in raw[1:]], 0))]
        else:
            pooled = [self._summarise(r["pos"], r["pos_keep"], r["neg"]) for r in raw[1:]]
        if c.stop_teacher_grad:
            t = {k: tf.stop_gradient(v) for k, v in t.items()}

        kl_pos = tf.add_n([distribution_distance(t["pos_hist"], q["pos_hist"], c.distance, self.step) for q in pooled])
        kl_neg = tf.add_n([distribution_distance(t["neg_hist"], q["neg_hist"], c.distance, self.step) for q in pooled])
        dists = [t, *pooled]
        order = order_loss([d["pos_mean"] for d in dists], [d["neg_mean"] for d in dists])  # Eq. 6 / 7
        total = c.lambda_1 * kl_pos + c.lambda_2 * kl_neg + c.lambda_3 * order  # Eq. 5 + Eq. 6 = Eq. 7

        parts = {"kl_pos": kl_pos, "kl_neg": kl_neg, "order": order}
        names = ["teacher"] + [f"student_{k}" for k in range(1, len(dists))]
        for name, d in zip(names, dists, strict=True):
            parts[f"{name}_pos_mean"] = d["pos_mean"]
            parts[f"{name}_neg_mean"] = d["neg_mean"]
            parts[f"{name}_overlap"] = tf.reduce_sum(tf.minimum(d["pos_hist"], d["neg_hist"]))
            parts[f"{name}_pos"] = d["pos"]
            parts[f"{name}_pos_keep"] = d["pos_keep"]
            parts[f"{name}_neg"] = d["neg"]
        return total, parts
