"""Choose the ``tf.distribute`` strategy: multi-worker with ``TF_CONFIG``, mirrored over GPUs, else default.

Build the model, its optimizer and ``compile()`` inside ``get_strategy().scope()`` and batch the
dataset with the GLOBAL batch size; the strategy splits each batch over its replicas. The choice is
logged through :mod:`logging` (logger ``tfface.distribute``).

Example:
  >>> from tfface.distribute import get_strategy
  >>> strategy = get_strategy()  # the default strategy on a machine without GPUs or TF_CONFIG
  >>> strategy.num_replicas_in_sync
  1
"""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

log = logging.getLogger(__name__)

# One strategy per process and kind: every new MirroredStrategy starts at the same collective keys, so
# training under a second instance in the same process can collide with the first one's collectives.
_CACHE: dict[tuple, tf.distribute.Strategy] = {}


def global_batch_size(local_batch: tf.Tensor) -> tf.Tensor:
    """Sum of the replicas' local batch sizes (int32), exact also for an uneven last batch; the local
    size itself outside a strategy or with one replica. For ``tf.nn.compute_average_loss``."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return tf.cast(local_batch, tf.int32)
    # float32 for the collective (int32 tensors live in host memory on GPUs); batch sizes are exact in it
    total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(local_batch, tf.float32))
    return tf.cast(tf.round(total), tf.int32)


def get_strategy() -> tf.distribute.Strategy:
    """The strategy to train under.

    - Inside a ``strategy.scope()``: that strategy (the caller already chose).
    - ``TF_CONFIG`` set (multi-host, a JSON cluster spec): ``MultiWorkerMirroredStrategy``.
    - One or more GPUs: ``MirroredStrategy`` over all of them (with one GPU this is a one-replica
      mirrored strategy, so single- and multi-GPU runs share the code path).
    - Otherwise the default (one-device) strategy.

    The multi-worker and mirrored strategies are created once per process and reused by later calls
    (collectives can be configured only once, and a second ``MirroredStrategy`` instance reuses the
    first one's collective keys), so several models trained in one process share one strategy.
    """
    if tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
        log.info("strategy: %s from the enclosing scope (%d replicas)", type(strategy).__name__,
                 strategy.num_replicas_in_sync)
        return strategy
    tf_config = os.environ.get("TF_CONFIG", "").strip()
    if tf_config:
        key = ("multi_worker", tf_config)
        if key not in _CACHE:
            try:
                workers = len(json.loads(tf_config).get("cluster", {}).get("worker", []))
            except ValueError:
                workers = -1
            _CACHE[key] = tf.distribute.MultiWorkerMirroredStrategy()
            log.info("strategy: MultiWorkerMirroredStrategy from TF_CONFIG (%s workers, %d replicas)",
                     workers if workers >= 0 else "unparsed", _CACHE[key].num_replicas_in_sync)
        return _CACHE[key]
    gpus = tuple(g.name for g in tf.config.list_logical_devices("GPU"))
    if gpus:
        key = ("mirrored", gpus)
        if key not in _CACHE:
            _CACHE[key] = tf.distribute.MirroredStrategy(list(gpus))
            log.info("strategy: MirroredStrategy over %d GPU(s): %s", len(gpus), ", ".join(gpus))
        return _CACHE[key]
    strategy = tf.distribute.get_strategy()
    log.info("strategy: default (one device, no GPU and no TF_CONFIG)")
    return strategy


def num_replicas() -> int:
    """Replicas of the current strategy (``1`` outside any ``strategy.scope()``)."""
    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def resolve_sync_batchnorm(sync_batchnorm: bool | None) -> bool:
    """``None`` -> synchronise BN statistics when the current strategy has more than one replica."""
    if sync_batchnorm is None:
        return num_replicas() > 1
    return bool(sync_batchnorm)
