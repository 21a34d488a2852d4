"""ScaNN configuration: the size rules of ScaNN's own documentation, as an overridable dataclass.

ScaNN's guidance (``docs/algorithms.md`` of google-research/scann) for a dataset of ``n`` points:

* ``n < 20k``: brute force (exact; nothing to train);
* ``20k <= n < 100k``: asymmetric hashing (AH, ``dimensions_per_block=2``) + rescoring ("reorder");
* ``n >= 100k``: tree partitioning into about ``sqrt(n)`` leaves + AH + rescoring, with the number of
  leaves searched tuned to the recall target.

:func:`choose_config` applies these rules and then the caller's overrides, so every knob can be set by
hand. :func:`build_searcher` turns a :class:`ScannConfig` into a ScaNN pybind searcher.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfface.errors import ConfigError

__all__ = [
    "AH_BELOW",
    "BRUTE_FORCE_BELOW",
    "MODES",
    "REORDER_DTYPES",
    "ScannConfig",
    "build_searcher",
    "choose_config",
    "scann_version",
]

BRUTE_FORCE_BELOW = 20_000
"""Galleries with fewer vectors are searched by brute force."""
AH_BELOW = 100_000
"""Galleries with fewer vectors (and at least :data:`BRUTE_FORCE_BELOW`) use AH + rescoring without a tree."""
MODES = ("brute_force", "ah", "tree_ah")
REORDER_DTYPES = ("float32", "int8", "bfloat16")


@dataclass(frozen=True)
class ScannConfig:
    """A complete ScaNN searcher configuration (dot-product distance).

    Attributes:
        mode: ``"brute_force"``, ``"ah"`` (asymmetric hashing + rescoring) or ``"tree_ah"``
            (partitioning + AH + rescoring).
        num_leaves: tree partitions (``tree_ah``); about ``sqrt(n)``.
        num_leaves_to_search: partitions searched per query by default (``tree_ah``); the main
            recall/speed knob, also settable per search.
        tree_training_sample_size: points sampled to train the partitioner.
        dimensions_per_block: AH sub-space size; ScaNN recommends 2.
        anisotropic_quantization_threshold: AH anisotropic (score-aware) loss threshold; 0.2 for
            normalised vectors, ``nan`` for plain reconstruction loss.
        ah_training_sample_size: points sampled to train the AH codebooks.
        reorder_k: candidates rescored by the reorder stage (must exceed ``k``); per search the
            stage rescores ``max(reorder_k, 2 * fetched)``.
        reorder_dtype: storage of the rescoring copy: ``"float32"`` (exact scores, 4 bytes/dim),
            ``"int8"`` (1 byte/dim, the default: keeps the index below the raw float32 size) or
            ``"bfloat16"``.
        brute_force_dtype: storage of the brute-force dataset; ``"float32"`` is exact.
        training_threads: threads for training (0: ScaNN's default, all cores).
        search_threads: threads for batched search (0: all cores, 1: serial).
    """

    mode: str = "brute_force"
    num_leaves: int | None = None
    num_leaves_to_search: int | None = None
    tree_training_sample_size: int = 100_000
    dimensions_per_block: int = 2
    anisotropic_quantization_threshold: float = 0.2
    ah_training_sample_size: int = 100_000
    reorder_k: int = 100
    reorder_dtype: str = "int8"
    brute_force_dtype: str = "float32"
    training_threads: int = 0
    search_threads: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields (``nan`` becomes ``None``)."""
        out = dataclasses.asdict(self)
        thr = out["anisotropic_quantization_threshold"]
        if thr is not None and math.isnan(thr):
            out["anisotropic_quantization_threshold"] = None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScannConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ConfigError``."""
        data = dict(_check_overrides(data))
        if data.get("anisotropic_quantization_threshold", 0.0) is None:
            data["anisotropic_quantization_threshold"] = float("nan")
        return cls(**data)

    def validate(self, n: int, dim: int) -> ScannConfig:
        """Raise ``ConfigError`` unless this configuration can index ``n`` vectors of dimension ``dim``."""
        if self.mode not in MODES:
            raise ConfigError(f"scann config mode: expected one of {MODES}, got {self.mode!r}")
        for name in ("tree_training_sample_size", "dimensions_per_block", "ah_training_sample_size", "reorder_k"):
            _positive(name, getattr(self, name))
        for name in ("training_threads", "search_threads"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 0:
                raise ConfigError(f"scann config {name}: expected an integer >= 0, got {val!r}")
        if self.reorder_dtype not in REORDER_DTYPES:
            raise ConfigError(f"scann config reorder_dtype: expected one of {REORDER_DTYPES}, got {self.reorder_dtype!r}")
        if self.brute_force_dtype not in REORDER_DTYPES:
            raise ConfigError(
                f"scann config brute_force_dtype: expected one of {REORDER_DTYPES}, got {self.brute_force_dtype!r}"
            )
        if self.dimensions_per_block > dim:
            raise ConfigError(
                f"scann config dimensions_per_block: {self.dimensions_per_block} exceeds the dimension {dim}"
            )
        if self.mode == "tree_ah":
            _positive("num_leaves", self.num_leaves)
            _positive("num_leaves_to_search", self.num_leaves_to_search)
            if self.num_leaves > n:
                raise ConfigError(f"scann config num_leaves: {self.num_leaves} exceeds the {n} vectors to index")
            if self.num_leaves_to_search > self.num_leaves:
                raise ConfigError(
                    f"scann config num_leaves_to_search: {self.num_leaves_to_search} exceeds num_leaves "
                    f"{self.num_leaves}"
                )
        if self.mode in ("ah", "tree_ah") and n < 16:
            raise ConfigError(f"scann config mode {self.mode!r}: AH needs at least 16 vectors, got {n}")
        return self


def _positive(name: str, val: Any) -> None:
    if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1:
        raise ConfigError(f"scann config {name}: expected a positive integer, got {val!r}")


_FIELDS = {f.name for f in dataclasses.fields(ScannConfig)}


def _check_overrides(overrides: dict[str, Any] | None) -> dict[str, Any]:
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"scann config: expected a mapping of overrides, got {type(overrides).__name__}")
    unknown = sorted(set(overrides) - _FIELDS)
    if unknown:
        raise ConfigError(f"scann config: unknown keys {unknown}; known: {sorted(_FIELDS)}")
    return dict(overrides)


def choose_config(n: int, dim: int, overrides: dict[str, Any] | ScannConfig | None = None) -> ScannConfig:
    """ScaNN's size rules for ``n`` vectors of dimension ``dim``, then ``overrides`` on top.

    ``overrides`` may set any :class:`ScannConfig` field; setting ``mode`` picks the algorithm and
    the remaining fields still follow the rules for that mode (e.g. ``num_leaves ~ sqrt(n)``). A
    full :class:`ScannConfig` is returned as is (validated).
    """
    if isinstance(overrides, ScannConfig):
        return overrides.validate(n, dim)
    over = _check_overrides(overrides)
    if n < 1:
        raise ConfigError(f"scann config: cannot configure an index of {n} vectors")
    mode = over.get("mode") or ("brute_force" if n < BRUTE_FORCE_BELOW else "ah" if n < AH_BELOW else "tree_ah")
    fields: dict[str, Any] = {"mode": mode}
    if mode == "tree_ah":
        leaves = int(min(n, max(1, round(math.sqrt(n)))))
        fields["num_leaves"] = leaves
        fields["num_leaves_to_search"] = max(1, math.ceil(leaves / 20))
        fields["tree_training_sample_size"] = int(min(n, 100_000))
        if "num_leaves" in over and "num_leaves_to_search" not in over:
            fields["num_leaves_to_search"] = max(1, math.ceil(int(over["num_leaves"]) / 20))
    fields["ah_training_sample_size"] = int(min(n, 100_000))
    fields.update(over)
    try:
        cfg = ScannConfig(**fields)
    except TypeError as err:  # pragma: no cover - keys are checked above
        raise ConfigError(f"scann config: {err}") from err
    return cfg.validate(n, dim)


def scann_version() -> str | None:
    """The installed ScaNN version, or ``None`` when ScaNN is not installed."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("scann")
    except (ImportError, PackageNotFoundError):
        return None


def scann_pybind():
    """Import ScaNN's pybind wrapper, or raise ``ConfigError`` naming the exact backend as the way out."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from scann.scann_ops.py import scann_ops_pybind
    except Exception as err:  # ImportError, or TF ABI mismatch (NotFoundError) under the wrong TF
        raise ConfigError(
            f"ScaNN is not usable here ({type(err).__name__}: {err}); install scann matching tensorflow "
            "(scann 1.4.2 needs tensorflow~=2.20.0) or use backend='exact'"
        ) from err
    return scann_ops_pybind


def _builder_for(db: np.ndarray, cfg: ScannConfig, num_neighbors: int):
    from scann.scann_ops.py.scann_builder import ReorderType

    dtypes = {"float32": ReorderType.FLOAT32, "int8": ReorderType.INT8, "bfloat16": ReorderType.BFLOAT16}
    b = scann_pybind().builder(db, num_neighbors, "dot_product")
    if cfg.training_threads:
        b = b.set_n_training_threads(cfg.training_threads)
    if cfg.mode == "brute_force":
        return b.score_brute_force(quantize=dtypes[cfg.brute_force_dtype])
    if cfg.mode == "tree_ah":
        b = b.tree(
            num_leaves=cfg.num_leaves,
            num_leaves_to_search=cfg.num_leaves_to_search,
            training_sample_size=cfg.tree_training_sample_size,
        )
    return b.score_ah(
        cfg.dimensions_per_block,
        anisotropic_quantization_threshold=cfg.anisotropic_quantization_threshold,
        training_sample_size=cfg.ah_training_sample_size,
    ).reorder(cfg.reorder_k, quantize=dtypes[cfg.reorder_dtype])


def build_searcher(vectors: np.ndarray, cfg: ScannConfig, num_neighbors: int = 10):
    """Build a ScaNN pybind searcher over ``vectors`` (``[n, D]`` float32, dot product) with ``cfg``.

    No document ids are given to ScaNN (its wrapper pickles them): row ``i`` of ``vectors`` is
    datapoint ``i``; the caller maps rows to ids.
    """
    db = np.ascontiguousarray(vectors, dtype=np.float32)
    cfg.validate(db.shape[0], db.shape[1])
    try:
        searcher = _builder_for(db, cfg, num_neighbors).build()
    except ConfigError:
        raise
    except Exception as err:  # ScaNN reports bad configurations as RuntimeError/ValueError
        raise ConfigError(f"ScaNN could not build a {cfg.mode} searcher over {db.shape} with {cfg}: {err}") from err
    if cfg.search_threads:
        searcher.set_num_threads(cfg.search_threads)
    return searcher
