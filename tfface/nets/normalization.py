"""Batch normalisation used by every tfface net, with a switch for cross-replica statistics."""

from __future__ import annotations

import keras


def batch_norm(name: str | None = None, sync: bool = False, scale: bool = True, momentum: float = 0.9,
               epsilon: float = 2e-5) -> keras.layers.BatchNormalization:
    """``BatchNormalization`` with insightface's epsilon; ``sync=True`` computes the statistics over
    all replicas of a ``tf.distribute`` strategy (``synchronized=True``), so N replicas train exactly
    as one device on the same global batch."""
    return keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, scale=scale, synchronized=sync,
                                           name=name)
