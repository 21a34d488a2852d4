"""GANFaces' domains and input pipeline (the spec's toy world, sections 7.2-7.3).

:func:`render_domains` renders, with the built-in 3DMM renderer (:func:`tfface.data.builtin.render_dataset`):

- ``synthetic`` (S): new identities rendered with ``NuisanceConfig(style="plain")``: the same geometry,
  pose, expression and Lambertian light as a full render, on a black background, with no skin marks,
  beard, hair, specular highlight, light colour cast, resolution loss, blur or noise (what a 3DMM render
  cannot express; :func:`tfface.data.synthetic.render_face`). Labels 0..n-1 are the identity labels;
- ``real`` (R, unpaired): other identities, full ``photo`` renders (cluttered background, hair, skin marks,
  specular light, colour cast, blur, noise): D_R's real samples;
- ``paired_synthetic`` / ``paired_real`` (P): one image of each of further identities, rendered both ways
  from the same identity and nuisance draws (the analogue of 300W-3D's fitted pairs);
- ``embedder`` (R_C): full renders of yet other identities, to pretrain the frozen C.

Identity ranges are disjoint (offsets 0, 1M, 2M, 3M). Renders are made at ``render_size`` and
area-averaged to the model's ``image_size``.

:func:`ganfaces_batches` draws the training batches: every sample comes from a stateless generator seeded
by (seed, stream, position), with replacement, so a run is reproducible and the same on 1 or N replicas.
"""

from __future__ import annotations

import numpy as np

from tfface.errors import ConfigError, DataError

__all__ = ["IDENTITY_OFFSETS", "downsample", "ganfaces_batches", "render_domains", "to_unit"]

IDENTITY_OFFSETS = {"synthetic": 0, "real": 1_000_000, "pairs": 2_000_000, "embedder": 3_000_000}


def to_unit(images) -> np.ndarray:
    """uint8 images -> float32 in [-1, 1] (float inputs are returned as float32)."""
    images = np.asarray(images)
    return images.astype(np.float32) / 127.5 - 1.0 if images.dtype == np.uint8 else images.astype(np.float32)


def downsample(dataset, size: int):
    """A :class:`~tfface.data.builtin.FaceDataset` area-averaged to ``size`` px (landmarks scaled)."""
    from tfface.data.builtin import FaceDataset

    n, h = dataset.images.shape[:2]
    if h == size:
        return dataset
    if h % size:
        raise DataError(f"images: {h} px renders cannot be area-averaged to {size} px (need a multiple)")
    f = h // size
    small = dataset.images.reshape(n, size, f, size, f, 3).astype(np.float32).mean((2, 4))
    return FaceDataset(np.round(small).astype(np.uint8), dataset.labels, dataset.identities,
                       dataset.landmarks5 / f, dataset.nuisance, dataset.config)


def render_domains(spec, image_size: int, progress: bool = True, cache_dir=None, workers: int | None = None) -> dict:
    """The four sets of :class:`~tfface.methods.ganfaces.config.GANFacesDataSpec` as FaceDatasets (module
    docstring); sets of size 0 are left out."""
    from tfface.data.builtin import render_dataset
    from tfface.data.synthetic import FaceDataConfig, NuisanceConfig

    photo, plain = NuisanceConfig(), NuisanceConfig(style="plain")

    def render(n, per, offset, nuisance):
        cfg = FaceDataConfig(num_identities=n, images_per_identity=per, image_size=spec.render_size, seed=spec.seed,
                             identity_offset=offset, nuisance=nuisance)
        return downsample(render_dataset(cfg, cache_dir=cache_dir, workers=workers, progress=progress), image_size)

    out = {"synthetic": render(spec.synthetic_identities, spec.synthetic_per_identity, IDENTITY_OFFSETS["synthetic"],
                               plain)}
    if spec.real_identities:
        out["real"] = render(spec.real_identities, spec.real_per_identity, IDENTITY_OFFSETS["real"], photo)
    if spec.pairs:
        out["paired_synthetic"] = render(spec.pairs, 1, IDENTITY_OFFSETS["pairs"], plain)
        out["paired_real"] = render(spec.pairs, 1, IDENTITY_OFFSETS["pairs"], photo)
    if spec.embedder_identities:
        out["embedder"] = render(spec.embedder_identities, spec.embedder_per_identity, IDENTITY_OFFSETS["embedder"],
                                 photo)
    return out


def ganfaces_batches(synthetic, identities, real, paired_synthetic=None, paired_real=None, batch_size: int = 16,
                     crop_size: int | None = None, num_identities: int | None = None, seed: int = 0):
    """An endless ``tf.data.Dataset`` of dict batches (GLOBAL ``batch_size``; a strategy splits them):
    ``synthetic`` [B, S, S, 3] in [-1, 1] with ``identities`` [B], ``real`` [B, S, S, 3], ``paired_synthetic``
    / ``paired_real`` [B, S, S, 3] (when pairs are given) and ``crop`` [B, 3] int32: C's crop offsets
    (dy, dx in [0, S - crop_size]) and flip flag (0/1). Images may be uint8 or float in [-1, 1]."""
    import tensorflow as tf

    synthetic, real = np.asarray(synthetic), np.asarray(real)
    identities = np.asarray(identities, np.int64)
    if batch_size < 1:
        raise ConfigError(f"batch_size: must be >= 1, got {batch_size}")
    if synthetic.ndim != 4 or synthetic.shape[-1] != 3 or not len(synthetic):
        raise DataError(f"synthetic: need a non-empty [N, S, S, 3] array of renders, got {synthetic.shape}")
    size = synthetic.shape[1]
    if len(identities) != len(synthetic):
        raise DataError(f"identities: {len(identities)} labels for {len(synthetic)} synthetic images")
    n_ids = int(num_identities) if num_identities is not None else int(identities.max()) + 1
    if identities.min() < 0 or identities.max() >= n_ids:
        raise DataError(f"identities: labels must be in [0, {n_ids}), got [{identities.min()}, {identities.max()}]")
    if real.ndim != 4 or not len(real):
        raise DataError(f"real: the unpaired real domain is empty ({real.shape}); D_R needs real images")
    if real.shape[1:] != synthetic.shape[1:]:
        raise DataError(f"real: images of {real.shape[1:]}, the synthetic domain has {synthetic.shape[1:]}")
    paired = paired_synthetic is not None
    if paired:
        ps, pr = np.asarray(paired_synthetic), np.asarray(paired_real)
        if ps.shape != pr.shape or ps.ndim != 4 or not len(ps):
            raise DataError(f"paired_synthetic / paired_real: need two non-empty arrays of the same shape, got "
                            f"{ps.shape} and {pr.shape}")
        if ps.shape[1:] != synthetic.shape[1:]:
            raise DataError(f"paired_synthetic: images of {ps.shape[1:]}, the synthetic domain has "
                            f"{synthetic.shape[1:]}")
    k = int(crop_size or size)
    if not 1 <= k <= size:
        raise ConfigError(f"crop_size: {k} must be between 1 and the image size {size}")

    def unit(x):
        return tf.cast(x, tf.float32) / 127.5 - 1.0 if x.dtype == tf.uint8 else tf.cast(x, tf.float32)

    def stream(arrays, number):
        tensors = [tf.constant(a) for a in arrays]
        n = len(arrays[0])

        def pick(i):
            key = tf.stack([tf.constant(seed, tf.int64) * 4 + number, i])
            j = tf.random.stateless_uniform([], seed=key, maxval=n, dtype=tf.int64)
            return [tf.gather(t, j) for t in tensors]

        return tf.data.Dataset.range(1 << 40).map(pick)

    def crops(i):
        key = tf.stack([tf.constant(seed, tf.int64) * 4 + 3, i])
        off = tf.random.stateless_uniform([2], seed=key, maxval=size - k + 1, dtype=tf.int32)
        flip = tf.random.stateless_uniform([1], seed=key + tf.constant([0, 1 << 41], tf.int64), maxval=2, dtype=tf.int32)
        return tf.concat([off, flip], 0)

    parts = [stream([synthetic, identities], 0), stream([real], 1), tf.data.Dataset.range(1 << 40).map(crops)]
    if paired:
        parts.append(stream([ps, pr], 2))

    def to_dict(*p):
        out = {"synthetic": unit(p[0][0]), "identities": p[0][1], "real": unit(p[1][0]), "crop": p[2]}
        if paired:
            out.update(paired_synthetic=unit(p[3][0]), paired_real=unit(p[3][1]))
        return out

    ds = tf.data.Dataset.zip(*parts).map(to_dict).batch(batch_size, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)
