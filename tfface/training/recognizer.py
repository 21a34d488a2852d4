"""Training a recognizer recipe (``tfface train recipes/recognizer_small.yaml``).

``train_recipe(recipe)`` renders (or reads) the training data, builds the recognizer inside the
strategy scope chosen by :func:`tfface.distribute.get_strategy`, trains it with ``model.fit`` and
writes ``<out>/embedder.keras`` (images -> embeddings), ``<out>/history.json`` and TensorBoard logs
under ``<out>/tensorboard``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfface.atomic import atomic_path
from tfface.methods.recognizer.config import RecognizerRecipe, TrainSpec


@dataclass
class TrainResult:
    recipe: RecognizerRecipe
    model: object  # the Recognizer
    embedder: object  # keras.Model images -> embeddings
    history: dict
    seconds: float
    out_dir: Path

    def summary(self) -> dict:
        last = {k: float(v[-1]) for k, v in self.history.items() if v}
        return {"name": self.recipe.name, "seconds": round(self.seconds, 1), "final": last,
                "embedder": str(self.out_dir / "embedder.keras")}


def recognizer_optimizer(spec: TrainSpec, steps_per_epoch: int):
    """The recipe's optimizer (SGD with momentum or AdamW) and schedule (linear warm-up over
    ``warmup_epochs`` then cosine decay to 1%, or constant) over ``epochs * steps_per_epoch`` batches,
    from :func:`tfface.training.optimizers.make_optimizer`."""
    from tfface.training.optimizers import OptimizerSpec, make_optimizer

    return make_optimizer(OptimizerSpec(spec.optimizer, spec.learning_rate, schedule=spec.schedule,
                                        warmup_steps=int(round(spec.warmup_epochs * steps_per_epoch)),
                                        momentum=spec.momentum, weight_decay=spec.weight_decay),
                          total_steps=spec.epochs * steps_per_epoch)


def load_training_data(recipe: RecognizerRecipe, workers: int | None = None, progress: bool = True):
    """(images uint8 [N,S,S,3], labels int64 [N]) for the recipe's data section."""
    d = recipe.data
    if d.source == "builtin":
        from tfface.data.builtin import render_dataset

        data = render_dataset(d.builtin, workers=workers, progress=progress)
        return data.images, data.labels
    from tfface.data.sources import load_images

    images, labels, _ = load_images(d.path, size=d.image_size)
    return images, labels


def train_recognizer(
    recipe: RecognizerRecipe,
    images: np.ndarray,
    labels: np.ndarray,
    out_dir: str | Path | None = None,
    strategy=None,
    verbose: int | str = "auto",
    callbacks: bool = True,
    extra_callbacks: Sequence = (),
) -> TrainResult:
    """Train the recipe's recognizer on (images, labels) with ``model.fit`` (:class:`~tfface.training.driver.Run`).

    The schedule and ``history.json`` both follow ``recipe.train.epochs``: to train for fewer
    epochs, change the recipe (``tfface train RECIPE --epochs N`` does), never only the fit.
    ``callbacks``: TensorBoard, checkpoint, and the backup a killed run resumes from
    (:mod:`tfface.training.resume`); ``extra_callbacks`` run after them."""
    from tfface.data.pipeline import make_dataset
    from tfface.methods.recognizer import build_recognizer
    from tfface.training.callbacks import default_callbacks
    from tfface.training.driver import Run, Stage
    from tfface.training.resume import EpochLog, resume_point

    spec = recipe.train
    out = Path(out_dir or recipe.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = Run(seed=spec.seed, strategy=strategy, mixed_precision=spec.mixed_precision)
    num_classes = int(labels.max()) + 1
    steps = max(1, len(labels) // spec.batch_size)
    with run.scope():
        model = build_recognizer(
            backbone=recipe.model.backbone,
            input_shape=tuple(images.shape[1:]),
            embedding_dim=recipe.model.embedding_dim,
            num_classes=num_classes,
            margin=recipe.model.margin,
            margin_kwargs=dict(recipe.model.margin_kwargs),
            backbone_kwargs=dict(recipe.model.backbone_kwargs),
        )
        model.compile(optimizer=recognizer_optimizer(spec, steps))
    # resumable: <out>/backup (Keras' BackupAndRestore) holds the last finished epoch of a killed run
    # with this recipe and model (tfface.training.resume); the data of epoch e depend on (seed, e) only
    initial = resume_point(out / "backup", recipe, model) if callbacks else 0
    ds = make_dataset(images, labels, batch_size=spec.batch_size, training=True, augment=spec.augment,
                      seed=spec.seed, strategy=run.strategy, epochs=spec.epochs, initial_epoch=initial)
    cbs = []
    log = None
    if callbacks:
        log = EpochLog(out / "epochs.json", fresh=initial == 0)
        cbs = [log, *default_callbacks(
            log_dir=str(out / "tensorboard"),
            checkpoint_path=str(out / "checkpoint.weights.h5"),
            backup_dir=str(out / "backup"),
            profile_batch=spec.profile_batch,
            image_sample=images[: min(16, len(images))],
        )]
    if initial:
        print(f"resuming {recipe.name!r} at epoch {initial + 1}/{spec.epochs} from {out / 'backup'}", flush=True)
    history = run.fit(model, [Stage("train", ds, spec.epochs, steps_per_epoch=steps, initial_epoch=initial)],
                      [*cbs, *extra_callbacks], verbose=verbose)["train"]
    if log is not None:
        history = log.history(spec.epochs)  # every epoch, the ones before a resume included
    embedder = model.embedding_model()
    with atomic_path(out / "embedder.keras", suffix=".keras") as tmp:
        embedder.save(tmp)
    run.write_record(out / "history.json", recipe, {"train": history})
    return TrainResult(recipe, model, embedder, history, run.seconds, out)


def check_model(recipe: RecognizerRecipe) -> None:
    """Build the recipe's model once on its input size (two classes), so a model section that cannot
    be built (say ``backbone_kwargs: {width: -1}``) fails with the key named before any data is rendered."""
    import keras

    from tfface.errors import ConfigError
    from tfface.methods.recognizer import build_recognizer

    size = recipe.data.builtin.image_size if recipe.data.source == "builtin" else recipe.data.image_size
    m = recipe.model
    try:
        build_recognizer(backbone=m.backbone, input_shape=(size, size, 3), embedding_dim=m.embedding_dim,
                         num_classes=2, margin=m.margin, margin_kwargs=dict(m.margin_kwargs),
                         backbone_kwargs=dict(m.backbone_kwargs))
    except ConfigError as e:
        key = str(e).split(":")[0].split(".")[0]
        section = "backbone_kwargs." if key in m.backbone_kwargs else "margin_kwargs." if key in m.margin_kwargs else ""
        raise ConfigError(f"model.{section}{e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model: cannot build {m.backbone} with backbone_kwargs {m.backbone_kwargs} and "
                          f"margin_kwargs {m.margin_kwargs} ({e})") from None
    finally:
        keras.backend.clear_session(free_memory=False)


def train_recipe(recipe: RecognizerRecipe, out_dir=None, verbose: int | str = "auto") -> TrainResult:
    """Check the model, load the recipe's data and train it (``tfface train recipes/recognizer_*.yaml``)."""
    check_model(recipe)
    images, labels = load_training_data(recipe)
    return train_recognizer(recipe, images, labels, out_dir=out_dir, verbose=verbose)
