"""DDL recipes: fine-tune a pretrained recognizer with ArcFace/CosFace + DDL, then evaluate per subset.

A recipe (``recipes/ddl_resolution.yaml``, ``recipes/ddl_pose.yaml``) is read strictly into
:class:`DDLRecipe` (unknown keys are errors naming the key). :func:`train_ddl_recipe` runs it:

1. the pretrained embedder: ``pretrained.embedder`` (a saved ``embedder.keras``), or trained first
   from ``pretrained.recipe`` (a recognizer recipe) into ``<out>/pretrained``;
2. the fine-tuning data: the built-in faces (``data.builtin``) or real images (``data.path``), split
   into easy and hard subsets (``data.split``: ``resolution`` by downsampling factors, ``pose`` by
   |yaw| from the built-in faces' nuisance record or a per-image attribute CSV);
3. :class:`tfface.methods.ddl.DDL` built inside the strategy scope (:func:`tfface.distribute.get_strategy`),
   head centres from class-mean embeddings, SGD with the paper's schedule (lr / 10 at half the
   steps), ``model.fit`` over ``train.steps`` batches from
   :class:`tfface.methods.ddl.data.DDLBatchBuilder`, TensorBoard scalars and the pair-similarity
   histograms (:class:`tfface.methods.ddl.DDLHistogramCallback`) under ``<out>/tensorboard``;
4. ``<out>/embedder.keras``, ``<out>/history.json`` and, with ``eval.enabled``, the per-subset
   evaluation before and after fine-tuning (``<out>/report.json``, ``<out>/histograms.png``).

``train.baseline: true`` trains the same batches with the margin loss alone (the fair fine-tuning
baseline). Run a recipe with ``python -m tfface.training.ddl recipes/ddl_resolution.yaml --out DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from tfface.atomic import atomic_path
from tfface.config import load_config, to_dict
from tfface.data.synthetic import FaceDataConfig
from tfface.errors import ConfigError, DataError
from tfface.losses.ddl import DDLLossConfig
from tfface.methods.ddl.data import STUDENT_PAIRS, SampleSet, downsample, pose_split, resolution_split

log = logging.getLogger(__name__)

__all__ = [
    "DDLDataSpec",
    "DDLEvalSpec",
    "DDLModelSpec",
    "DDLRecipe",
    "DDLTrainSpec",
    "PretrainedSpec",
    "SplitSpec",
    "TestSets",
    "builtin_test_sets",
    "embed_images",
    "evaluate_embedder",
    "finetune_ddl",
    "load_ddl_recipe",
    "make_split",
    "real_test_sets",
    "train_ddl_recipe",
]


# ------------------------------------------------------------------------------------- recipe
@dataclass(frozen=True)
class SplitSpec:
    """How easy and hard subsets are defined (see :mod:`tfface.methods.ddl.data`)."""

    kind: Literal["resolution", "pose"] = "resolution"
    factors: tuple[int, ...] = (8, 4)  # resolution: one student per factor, hardest first
    easy_max_yaw: float = 10.0  # pose: easy |yaw| < this (paper: 10 degrees)
    hard_min_yaw: float = 45.0  # pose: hard |yaw| > this (paper: 45 degrees)
    attributes: str | None = None  # real data, pose: CSV with columns path, yaw
    student_pairs: str = "easy-hard"
    drop_unpaired: bool = True  # leave identities without a positive pair out of the pair draws

    def __post_init__(self):
        if self.student_pairs not in STUDENT_PAIRS:
            raise ConfigError(f"student_pairs: {self.student_pairs!r} is not one of {list(STUDENT_PAIRS)}")
        if self.kind == "resolution" and (not self.factors or any(f < 2 for f in self.factors)):
            raise ConfigError(f"factors: need integers >= 2 for the resolution split, got {list(self.factors)}")
        if self.kind == "pose" and not 0 < self.easy_max_yaw <= self.hard_min_yaw:
            raise ConfigError(f"easy_max_yaw: need 0 < easy_max_yaw <= hard_min_yaw, got {self.easy_max_yaw}, "
                              f"{self.hard_min_yaw}")


@dataclass(frozen=True)
class PretrainedSpec:
    embedder: str | None = None  # a saved embedder (.keras); used when it exists
    recipe: str | None = "recipes/recognizer_small.yaml"  # otherwise trained from this recognizer recipe
    epochs: int | None = None  # override the recognizer recipe's epochs

    def __post_init__(self):
        if not self.embedder and not self.recipe:
            raise ConfigError("pretrained: give embedder (a .keras file) or recipe (a recognizer recipe)")


@dataclass(frozen=True)
class DDLDataSpec:
    """Fine-tuning data: built-in faces (identities disjoint from pretraining by ``identity_offset``)
    or real images from ``path`` (an image folder, .rec, TFRecord or rendered .npz)."""

    source: Literal["builtin", "folder", "rec", "tfrecord", "npz"] = "builtin"
    builtin: FaceDataConfig = field(default_factory=lambda: FaceDataConfig(
        num_identities=60, images_per_identity=10, image_size=64, identity_offset=50_000))
    path: str | None = None
    image_size: int = 64
    split: SplitSpec = field(default_factory=SplitSpec)

    def __post_init__(self):
        if self.source != "builtin" and not self.path:
            raise ConfigError(f"path: required when source is {self.source!r}")


@dataclass(frozen=True)
class DDLModelSpec:
    margin: str = "arcface"
    margin_kwargs: dict = field(default_factory=lambda: {"s": 30.0, "m": 0.3})
    classify: Literal["all", "identities"] = "all"
    init_centres: bool = True  # head centres = class-mean embeddings of the pretrained model (A10)
    sync_batchnorm: bool | None = None


@dataclass(frozen=True)
class DDLTrainSpec:
    b: int = 16  # pairs and identity-distinct samples per distribution (global)
    steps: int = 200
    epochs: int = 4  # the steps are split into this many Keras epochs (logging, callbacks)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_drop: float = 0.5  # divide the learning rate by 10 at this fraction of the steps (0: never)
    flip: bool = True
    baseline: bool = False  # the margin loss alone on the same batches (no DDL)
    seed: int = 0

    def __post_init__(self):
        if self.b < 2:
            raise ConfigError(f"b: must be >= 2, got {self.b}")
        if self.steps < 1 or self.epochs < 1 or self.epochs > self.steps:
            raise ConfigError(f"steps, epochs: need 1 <= epochs <= steps, got {self.steps}, {self.epochs}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate: must be > 0, got {self.learning_rate}")
        if not 0 <= self.lr_drop < 1:
            raise ConfigError(f"lr_drop: must be in [0, 1), got {self.lr_drop}")


@dataclass(frozen=True)
class DDLEvalSpec:
    """Held-out identities (built-in: rendered like the fine-tuning data; real data: a share of its
    identities) and easy distractor identities for identification."""

    enabled: bool = True
    identities: int = 80
    images_per_identity: int = 6
    identity_offset: int = 100_000
    distractors: int = 500
    distractor_offset: int = 200_000
    real_test_fraction: float = 0.5  # real data: this share of the identities is held out for testing
    far_targets: tuple[float, ...] = (1e-2, 1e-3)
    seed: int = 1


@dataclass(frozen=True)
class DDLRecipe:
    name: str = "ddl"
    pretrained: PretrainedSpec = field(default_factory=PretrainedSpec)
    data: DDLDataSpec = field(default_factory=DDLDataSpec)
    model: DDLModelSpec = field(default_factory=DDLModelSpec)
    loss: DDLLossConfig = field(default_factory=DDLLossConfig)
    train: DDLTrainSpec = field(default_factory=DDLTrainSpec)
    eval: DDLEvalSpec = field(default_factory=DDLEvalSpec)
    output_dir: str | None = None

    @property
    def out_dir(self) -> str:
        return self.output_dir or os.path.join("runs", self.name)


def load_ddl_recipe(path: str | os.PathLike) -> DDLRecipe:
    return load_config(DDLRecipe, path)


# --------------------------------------------------------------------------------------- data
def make_split(images: np.ndarray, labels: np.ndarray, spec: SplitSpec, yaw: np.ndarray | None = None
               ) -> tuple[SampleSet, list[SampleSet]]:
    """(easy, hard subsets) of a labelled image set by ``spec``; ``yaw`` is needed for ``pose``."""
    if spec.kind == "resolution":
        return resolution_split(images, labels, spec.factors)
    if yaw is None:
        raise DataError("split.kind pose: no per-image yaw (built-in faces record it; real data needs "
                        "split.attributes, a CSV with columns path, yaw)")
    return pose_split(images, labels, yaw, spec.easy_max_yaw, spec.hard_min_yaw)


@dataclass
class TestSets:
    """A gallery (easy images, one per test identity), probe sets by subset name, distractors."""

    gallery: np.ndarray
    gallery_labels: np.ndarray
    probes: dict[str, tuple[np.ndarray, np.ndarray]]
    distractors: np.ndarray | None = None

    def summary(self) -> dict:
        return {"gallery": int(len(self.gallery_labels)),
                "probes": {k: int(len(v[1])) for k, v in self.probes.items()},
                "distractors": 0 if self.distractors is None else int(len(self.distractors))}


def _first_per_identity(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, first = np.unique(labels, return_index=True)
    rest = np.setdiff1d(np.arange(len(labels)), first)
    return np.sort(first), rest


def _resolution_test(images, labels, factors, distractors) -> TestSets:
    g, rest = _first_per_identity(labels)
    if len(rest) == 0:
        raise DataError("eval: every test identity has one image; the probes need a second")
    probes = {"easy": (images[rest], labels[rest])}
    for f in factors:
        probes[f"x{f}"] = (downsample(images[rest], f), labels[rest])
    return TestSets(images[g], labels[g], probes, distractors)


def builtin_test_sets(spec: DDLEvalSpec, data: DDLDataSpec, workers: int | None = None,
                      progress: bool = False) -> TestSets:
    """Render the held-out identities like the fine-tuning data (same nuisance ranges) and the
    distractors (one near-frontal full-resolution image each); build gallery and probes.

    resolution: gallery = the first image of each identity, probes ``easy`` = its other images and
    ``x{F}`` = those downsampled by F. pose: gallery = the first easy (near-frontal) image, probes
    ``easy`` = the other easy images and ``pose`` = the hard-pose images; identities without an easy
    image are left out.
    """
    from tfface.data.builtin import render_dataset

    base = data.builtin
    split = data.split
    per = spec.images_per_identity * (4 if split.kind == "pose" else 1)
    test = render_dataset(base.replace(num_identities=spec.identities, images_per_identity=per,
                                       identity_offset=spec.identity_offset, seed=base.seed + 0),
                          workers=workers, progress=progress)
    dis = None
    if spec.distractors:
        dcfg = base.replace(num_identities=spec.distractors, images_per_identity=1,
                            identity_offset=spec.distractor_offset,
                            nuisance=dataclasses.replace(base.nuisance, yaw=(-split.easy_max_yaw, split.easy_max_yaw),
                                                         resolution_factors=(1,)))
        dis = render_dataset(dcfg, workers=workers, progress=progress).images
    if split.kind == "resolution":
        return _resolution_test(test.images, test.labels, split.factors, dis)
    yaw = np.abs(test.nuisance["yaw"])
    easy = np.flatnonzero(yaw < split.easy_max_yaw)
    hard = np.flatnonzero(yaw > split.hard_min_yaw)
    g_local, rest = _first_per_identity(test.labels[easy])
    g = easy[g_local]
    ids = test.labels[g]
    probe_easy = easy[rest]
    probe_hard = hard[np.isin(test.labels[hard], ids)]
    if len(probe_easy) == 0 or len(probe_hard) == 0:
        raise DataError("eval: the pose test set has no easy or no hard probes (render more images)")
    probes = {"easy": (test.images[probe_easy], test.labels[probe_easy]),
              "pose": (test.images[probe_hard], test.labels[probe_hard])}
    return TestSets(test.images[g], ids, probes, dis)


def real_test_sets(images: np.ndarray, labels: np.ndarray, factors, distractors: np.ndarray | None = None) -> TestSets:
    """Real data, resolution as the hard factor: full-resolution gallery (first image per identity),
    probes at full resolution (``easy``) and downsampled by each factor (``x{F}``)."""
    return _resolution_test(images, labels, factors, distractors)


def embed_images(model, images: np.ndarray, batch_size: int = 256, preprocessing: str = "arcface") -> np.ndarray:
    """Embeddings (float32 [N, D]) of uint8 images through a Keras model (images -> embeddings)."""
    from tfface.data.pipeline import preprocess

    out = []
    for i in range(0, len(images), batch_size):
        x = preprocess(images[i : i + batch_size], preprocessing)
        out.append(np.asarray(model(x, training=False), np.float32))
    return np.concatenate(out) if out else np.zeros((0, int(model.output_shape[-1])), np.float32)


def evaluate_embedder(model, test: TestSets, far_targets=(1e-2, 1e-3)):
    """Per-subset metrics and distribution stats (:func:`tfface.methods.ddl.evaluation.evaluate_subsets`)."""
    from tfface.methods.ddl.evaluation import evaluate_subsets

    gallery = embed_images(model, test.gallery)
    dis = embed_images(model, test.distractors) if test.distractors is not None else None
    probes = {k: (embed_images(model, imgs), labs) for k, (imgs, labs) in test.probes.items()}
    return evaluate_subsets(gallery, test.gallery_labels, probes, distractors=dis, far_targets=far_targets)


# ------------------------------------------------------------------------------------ training
def _optimizer(spec: DDLTrainSpec):
    import keras

    lr = spec.learning_rate
    if spec.lr_drop > 0:
        lr = keras.optimizers.schedules.PiecewiseConstantDecay([max(1, int(spec.steps * spec.lr_drop))],
                                                               [spec.learning_rate, spec.learning_rate / 10])
    if spec.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=spec.weight_decay)
    return keras.optimizers.SGD(learning_rate=lr, momentum=spec.momentum, weight_decay=spec.weight_decay)


def finetune_ddl(
    embedder,
    easy: SampleSet,
    hard: list[SampleSet],
    model: DDLModelSpec,
    loss: DDLLossConfig | None,
    train: DDLTrainSpec,
    student_pairs: str = "easy-hard",
    drop_unpaired: bool = True,
    strategy=None,
    log_dir: str | None = None,
    verbose: int | str = 0,
):
    """Fine-tune a copy of ``embedder`` on (easy, hard) with DDL (``loss``) or without (``loss=None``).

    Returns ``(model, history dict, seconds)``; ``model.embedder`` is the fine-tuned embedder. The
    batches depend only on ``train.seed``, so arms with one seed see identical batches.
    """
    import keras

    from tfface.data.pipeline import preprocess
    from tfface.distribute import get_strategy
    from tfface.methods.ddl import DDLHistogramCallback, build_ddl
    from tfface.methods.ddl.data import DDLBatchBuilder

    builder = DDLBatchBuilder(easy, hard, b=train.b, seed=train.seed, student_pairs=student_pairs,
                              drop_unpaired=drop_unpaired)
    strategy = strategy or get_strategy()
    per_epoch = max(1, train.steps // train.epochs)
    ds = builder.dataset(per_epoch * train.epochs, flip=train.flip, strategy=strategy)
    keras.utils.set_random_seed(train.seed)
    centres = None
    if model.init_centres:
        # every fine-tuning image (easy and hard): an identity may have no easy image (pose splits)
        centres = (preprocess(builder.images, "arcface").numpy(), builder.bank_labels)
    with strategy.scope():
        ddl = build_ddl(embedder, builder.num_classes, num_students=len(hard), margin=model.margin,
                        margin_kwargs=model.margin_kwargs, loss=loss, classify=model.classify,
                        sync_batchnorm=model.sync_batchnorm, centres=centres, seed=train.seed)
        ddl.compile(optimizer=_optimizer(train))
    callbacks = []
    if log_dir:
        sample, _ = next(iter(builder.dataset(1, seed=train.seed + 12345, flip=False)))
        callbacks = [keras.callbacks.TensorBoard(log_dir=log_dir),
                     DDLHistogramCallback(sample, log_dir, names=builder.names)]
    t0 = time.perf_counter()
    hist = ddl.fit(ds, epochs=train.epochs, steps_per_epoch=per_epoch, callbacks=callbacks, verbose=verbose,
                   shuffle=False)
    seconds = time.perf_counter() - t0
    return ddl, {k: [float(v) for v in vs] for k, vs in hist.history.items()}, seconds


def _pretrained_embedder(recipe: DDLRecipe, out: Path):
    import keras

    p = recipe.pretrained
    if p.embedder and Path(p.embedder).is_file():
        return keras.saving.load_model(p.embedder, compile=False), p.embedder
    if p.embedder and not p.recipe:
        raise ConfigError(f"pretrained.embedder: {p.embedder} not found and no pretrained.recipe to train it")
    from tfface.methods.recognizer.config import load_recipe
    from tfface.training.fit import train_recipe

    rec = load_recipe(p.recipe)
    target = out / "pretrained"
    if (target / "embedder.keras").is_file():
        return keras.saving.load_model(target / "embedder.keras", compile=False), str(target / "embedder.keras")
    res = train_recipe(rec, out_dir=target, epochs=p.epochs)
    return res.embedder, str(target / "embedder.keras")


def _finetune_data(recipe: DDLRecipe):
    d = recipe.data
    if d.source == "builtin":
        from tfface.data.builtin import render_dataset

        data = render_dataset(d.builtin)
        return data.images, data.labels, data.nuisance.get("yaw"), None
    from tfface.data.sources import load_images

    images, labels, paths = load_images(d.path, size=d.image_size)
    yaw = None
    if d.split.attributes:
        from tfface.methods.ddl.data import load_attribute_file

        if paths is None:
            raise DataError("split.attributes: per-image attributes need an image folder (paths) as data.path")
        yaw = load_attribute_file(d.split.attributes, paths, root=d.path).get("yaw")
    return images, labels, yaw, paths


def train_ddl_recipe(path: str | os.PathLike | DDLRecipe, out_dir: str | os.PathLike | None = None) -> dict:
    """Run a DDL recipe (see the module docstring); returns the summary written to ``report.json``."""
    from tfface.eval.report import to_jsonable
    from tfface.methods.ddl.evaluation import plot_easy_hard_histograms

    recipe = path if isinstance(path, DDLRecipe) else load_ddl_recipe(path)
    out = Path(out_dir or recipe.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    embedder, source = _pretrained_embedder(recipe, out)
    images, labels, yaw, _ = _finetune_data(recipe)
    test = None
    if recipe.eval.enabled:
        if recipe.data.source == "builtin":
            test = builtin_test_sets(recipe.eval, recipe.data)
        else:  # hold out identities of the real data
            ids = np.unique(labels)
            rng = np.random.default_rng(recipe.eval.seed)
            held = rng.choice(ids, max(2, int(len(ids) * recipe.eval.real_test_fraction)), replace=False)
            m = np.isin(labels, held)
            test = real_test_sets(images[m], labels[m], recipe.data.split.factors)
            images, labels, yaw = images[~m], labels[~m], None if yaw is None else yaw[~m]
    easy, hard = make_split(images, labels, recipe.data.split, yaw)
    loss = None if recipe.train.baseline else recipe.loss
    model, history, seconds = finetune_ddl(
        embedder, easy, hard, recipe.model, loss, recipe.train, recipe.data.split.student_pairs,
        recipe.data.split.drop_unpaired, log_dir=str(out / "tensorboard"), verbose="auto")
    with atomic_path(out / "embedder.keras", suffix=".keras") as tmp:
        model.embedder.save(tmp)
    report = {"recipe": to_dict(recipe), "pretrained": source, "history": history, "seconds": seconds,
              "subsets": {"easy": len(easy), **{h.name: len(h) for h in hard}}}
    if test is not None:
        before, s_before = evaluate_embedder(embedder, test, recipe.eval.far_targets)
        after, s_after = evaluate_embedder(model.embedder, test, recipe.eval.far_targets)
        report["eval"] = {"test_sets": test.summary(), "pretrained": before, "finetuned": after}
        hardest = [k for k in s_after if k != "easy"][0]
        plot_easy_hard_histograms({"pretrained": s_before, "fine-tuned" + (" (DDL)" if loss else ""): s_after},
                                  out / "histograms.png", subsets=["easy", hardest])
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(to_jsonable(report), indent=2))
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tfface.training.ddl", description=__doc__.split("\n")[0])
    parser.add_argument("recipe", help="a DDL recipe (recipes/ddl_resolution.yaml, recipes/ddl_pose.yaml)")
    parser.add_argument("--out", help="output folder (default: runs/<name>)")
    a = parser.parse_args(argv)
    report = train_ddl_recipe(a.recipe, a.out)
    ev = report.get("eval", {})
    for stage in ("pretrained", "finetuned"):
        for subset, m in ev.get(stage, {}).items():
            print(f"{stage:10s} {subset:6s} TAR@FAR=1e-2 {m.get('tar@far=0.01')} rank-1 {m['rank1']:.3f} "
                  f"overlap {m['overlap']:.3f} margin {m['margin']:.3f}")


if __name__ == "__main__":
    main()

