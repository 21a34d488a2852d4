"""Training callbacks: TensorBoard (scalars, profiler trace, sample-image grids), checkpoints, backup.

Keras' own progress bar reports progress; nothing here prints.

Example:
  >>> from tfface.training.callbacks import default_callbacks
  >>> cbs = default_callbacks("runs/demo/tensorboard", checkpoint_path="runs/demo/ckpt.weights.h5",
  ...                         backup_dir="runs/demo/backup", profile_batch=0)
  >>> [type(c).__name__ for c in cbs]
  ['TensorBoard', 'ModelCheckpoint', 'BackupAndRestore']
"""

from __future__ import annotations

import os
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from tfface.errors import ConfigError


def image_grid(images: np.ndarray, cols: int | None = None) -> np.ndarray:
    """``[N, H, W, C]`` images -> one ``[rows*H, cols*W, C]`` float32 grid in [0, 1].

    uint8 images are divided by 255; float images with negative values are taken as [-1, 1]
    (tfface's preprocessing) and mapped to [0, 1]; other float images are clipped to [0, 1].
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or len(images) == 0:
        raise ConfigError(f"image grid: need [N, H, W, C] images, got shape {images.shape}")
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    else:
        images = images.astype(np.float32)
        if images.min() < 0.0:
            images = (images + 1.0) / 2.0
        images = np.clip(images, 0.0, 1.0)
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w, c), np.float32)
    for i, im in enumerate(images):
        r, k = divmod(i, cols)
        grid[r * h : (r + 1) * h, k * w : (k + 1) * w] = im
    return grid


class ImageGridCallback(keras.callbacks.Callback):
    """Write a grid of sample images to TensorBoard (``tf.summary.image`` under ``<log_dir>/images``).

    Args:
      images: ``[N, H, W, C]`` images (uint8, or float in [0, 1] or [-1, 1]), or a callable
        ``images(model) -> array`` (e.g. a generator's samples for a method with one).
      log_dir: the TensorBoard log directory.
      every_n_epochs: write after epochs 0, n, 2n, ...
      max_images: at most this many images in the grid.
      name: the summary tag.
    """

    def __init__(self, images: np.ndarray | Callable, log_dir: str, every_n_epochs: int = 1, max_images: int = 36,
                 name: str = "samples"):
        super().__init__()
        if int(every_n_epochs) < 1:
            raise ConfigError(f"every_n_epochs: must be >= 1, got {every_n_epochs}")
        self.images = images if callable(images) else np.asarray(images)
        self.log_dir = str(log_dir)
        self.every_n_epochs = int(every_n_epochs)
        self.max_images = int(max_images)
        self.name = name
        self._writer = None

    def _samples(self) -> np.ndarray:
        images = self.images(self.model) if callable(self.images) else self.images
        return np.asarray(images)[: self.max_images]

    def on_epoch_end(self, epoch, logs=None):
        if epoch % self.every_n_epochs:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "images"))
        with self._writer.as_default():
            tf.summary.image(self.name, image_grid(self._samples())[None], step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def default_callbacks(log_dir: str, checkpoint_path: str | None = None, backup_dir: str | None = None,
                      profile_batch: int | tuple[int, int] = 0, image_sample: np.ndarray | None = None,
                      every_n_epochs: int = 1) -> list[keras.callbacks.Callback]:
    """The usual callbacks of a ``model.fit`` run.

    - ``TensorBoard(log_dir, profile_batch=profile_batch)``: epoch scalars; a profiler trace of the
      batch (or ``(start, stop)`` range) when ``profile_batch`` is not 0.
    - ``ModelCheckpoint(checkpoint_path)`` each epoch when given: a ``.keras`` path saves the whole
      model, a ``.weights.h5`` path the weights only.
    - ``BackupAndRestore(backup_dir)`` when given: resume an interrupted ``fit`` from the last epoch.
    - :class:`ImageGridCallback` of ``image_sample`` when given.
    """
    cbs: list[keras.callbacks.Callback] = [
        keras.callbacks.TensorBoard(log_dir=str(log_dir), profile_batch=profile_batch, histogram_freq=0)
    ]
    if checkpoint_path:
        path = str(checkpoint_path)
        if not (path.endswith(".keras") or path.endswith(".weights.h5")):
            raise ConfigError(f"checkpoint_path: must end with .keras or .weights.h5, got {path!r}")
        cbs.append(keras.callbacks.ModelCheckpoint(path, save_weights_only=path.endswith(".weights.h5")))
    if backup_dir:
        cbs.append(keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=True))
    if image_sample is not None and (callable(image_sample) or len(image_sample)):
        cbs.append(ImageGridCallback(image_sample, str(log_dir), every_n_epochs=every_n_epochs))
    return cbs
