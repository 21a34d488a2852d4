"""DDL training: the optimizer and :func:`finetune_ddl`, the fine-tuning stage of a DDL recipe.

The recipe runner (:func:`tfface.experiments.train_ddl.run_recipe`, ``tfface train recipes/ddl_*.yaml``) does:

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
baseline). Run a recipe with ``tfface train recipes/ddl_resolution.yaml [--out DIR]``.
"""

from __future__ import annotations

from tfface.losses.ddl import DDLLossConfig
from tfface.methods.ddl.config import DDLModelSpec, DDLTrainSpec
from tfface.methods.ddl.data import SampleSet

__all__ = ["ddl_optimizer", "finetune_ddl"]


def ddl_optimizer(spec: DDLTrainSpec):
    """SGD (momentum) or AdamW, the rate divided by 10 at ``lr_drop`` of the steps (the paper's
    schedule), from :func:`tfface.training.optimizers.make_optimizer`."""
    from tfface.training.optimizers import OptimizerSpec, make_optimizer

    return make_optimizer(OptimizerSpec(spec.optimizer, spec.learning_rate,
                                        schedule="piecewise" if spec.lr_drop > 0 else "constant",
                                        boundaries=(spec.lr_drop,) if spec.lr_drop > 0 else (), decay=0.1,
                                        momentum=spec.momentum, weight_decay=spec.weight_decay),
                          total_steps=spec.steps)


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
    from tfface.training.driver import Run, Stage

    builder = DDLBatchBuilder(easy, hard, b=train.b, seed=train.seed, student_pairs=student_pairs,
                              drop_unpaired=drop_unpaired)
    strategy = strategy or get_strategy()
    per_epoch = max(1, train.steps // train.epochs)
    ds = builder.dataset(per_epoch * train.epochs, flip=train.flip, strategy=strategy)
    run = Run(seed=train.seed, strategy=strategy)
    centres = None
    if model.init_centres:
        # every fine-tuning image (easy and hard): an identity may have no easy image (pose splits)
        centres = (preprocess(builder.images, "arcface").numpy(), builder.bank_labels)
    with run.scope():
        ddl = build_ddl(embedder, builder.num_classes, num_students=len(hard), margin=model.margin,
                        margin_kwargs=model.margin_kwargs, loss=loss, classify=model.classify,
                        sync_batchnorm=model.sync_batchnorm, centres=centres, seed=train.seed)
        ddl.compile(optimizer=ddl_optimizer(train))
    callbacks = []
    if log_dir:
        sample, _ = next(iter(builder.dataset(1, seed=train.seed + 12345, flip=False)))
        callbacks = [keras.callbacks.TensorBoard(log_dir=log_dir),
                     DDLHistogramCallback(sample, log_dir, names=builder.names)]
    history = run.fit(ddl, [Stage("finetune", ds, train.epochs, per_epoch)], callbacks, verbose=verbose)
    return ddl, history["finetune"], run.seconds
