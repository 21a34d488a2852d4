"""The ``model.fit`` driver for recognizer recipes.

``train_recipe(recipe)`` renders (or reads) the training data, builds the recognizer inside the
strategy scope chosen by :func:`tfface.distribute.get_strategy`, trains it with ``model.fit`` and
writes ``<out>/embedder.keras`` (images -> embeddings), ``<out>/history.json`` and TensorBoard logs
under ``<out>/tensorboard``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfface.atomic import atomic_path
from tfface.config import to_dict
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


def make_optimizer(spec: TrainSpec, steps_per_epoch: int):
    """SGD (momentum) or AdamW with linear warm-up then cosine decay (or constant)."""
    import keras

    total = max(1, spec.epochs * steps_per_epoch)
    warmup = int(round(spec.warmup_epochs * steps_per_epoch))
    if spec.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=spec.learning_rate * (0.01 if warmup else 1.0),
            decay_steps=max(1, total - warmup),
            alpha=0.01,
            warmup_target=spec.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    else:
        lr = spec.learning_rate
    if spec.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=spec.weight_decay)
    return keras.optimizers.SGD(learning_rate=lr, momentum=spec.momentum, weight_decay=spec.weight_decay,
                                nesterov=False)


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
    epochs: int | None = None,
    strategy=None,
    verbose: int | str = "auto",
    callbacks: bool = True,
) -> TrainResult:
    """Train the recipe's recognizer on (images, labels) with ``model.fit``."""
    import keras

    from tfface.data.pipeline import make_dataset
    from tfface.distribute import get_strategy
    from tfface.methods.recognizer import build_recognizer
    from tfface.training.callbacks import default_callbacks

    spec = recipe.train
    epochs = epochs or spec.epochs
    out = Path(out_dir or recipe.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(spec.seed)
    strategy = strategy or get_strategy()
    if spec.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    num_classes = int(labels.max()) + 1
    steps = max(1, len(labels) // spec.batch_size)
    with strategy.scope():
        model = build_recognizer(
            backbone=recipe.model.backbone,
            input_shape=tuple(images.shape[1:]),
            embedding_dim=recipe.model.embedding_dim,
            num_classes=num_classes,
            margin=recipe.model.margin,
            margin_kwargs=dict(recipe.model.margin_kwargs),
            backbone_kwargs=dict(recipe.model.backbone_kwargs),
        )
        model.compile(optimizer=make_optimizer(spec, steps))
    ds = make_dataset(images, labels, batch_size=spec.batch_size, training=True, augment=spec.augment,
                      seed=spec.seed, strategy=strategy)
    cbs = []
    if callbacks:
        cbs = default_callbacks(
            log_dir=str(out / "tensorboard"),
            checkpoint_path=str(out / "checkpoint.weights.h5"),
            backup_dir=str(out / "backup"),
            profile_batch=spec.profile_batch,
            image_sample=images[: min(16, len(images))],
        )
    t0 = time.perf_counter()
    hist = model.fit(ds, epochs=epochs, callbacks=cbs, verbose=verbose, shuffle=False)  # shuffled in tf.data
    seconds = time.perf_counter() - t0
    embedder = model.embedding_model()
    with atomic_path(out / "embedder.keras", suffix=".keras") as tmp:
        embedder.save(tmp)
    history = {k: [float(x) for x in v] for k, v in hist.history.items()}
    with atomic_path(out / "history.json") as tmp:
        tmp.write_text(json.dumps({"recipe": to_dict(recipe), "history": history,
                                   "seconds": seconds, "replicas": strategy.num_replicas_in_sync}, indent=2))
    if spec.mixed_precision:
        keras.mixed_precision.set_global_policy("float32")
    return TrainResult(recipe, model, embedder, history, seconds, out)


def train_recipe(recipe: RecognizerRecipe, out_dir=None, epochs=None) -> TrainResult:
    images, labels = load_training_data(recipe)
    return train_recognizer(recipe, images, labels, out_dir=out_dir, epochs=epochs)

