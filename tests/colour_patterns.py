"""A tiny learnable image set for recognizer tests: one colour and oriented pattern per class."""

import numpy as np


def colour_patterns(num_classes: int = 8, per_class: int = 8, size: int = 32, seed: int = 0):
    """Each class a distinct colour plus an oriented sinusoidal pattern, with per-image noise, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, labels = [], []
    for c in range(num_classes):
        colour = rng.uniform(-1, 1, 3)
        angle, freq = np.pi * c / num_classes, 2 + c % 3
        pattern = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)))
        for _ in range(per_class):
            img = 0.5 * colour + 0.4 * pattern[..., None] + 0.1 * rng.normal(size=(size, size, 3))
            images.append(np.clip(img, -1, 1))
            labels.append(c)
    return np.asarray(images, np.float32), np.asarray(labels, np.int32)
