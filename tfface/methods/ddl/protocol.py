"""DDL's test protocol: a gallery of easy images, probe sets per subset (easy and each hard kind),
easy distractors; rendered for the built-in faces or held out of real data.

resolution: gallery = the first image of each identity, probes ``easy`` = its other images and
``x{F}`` = those downsampled by F. pose: gallery = the first easy (near-frontal) image, probes
``easy`` = the other easy images and ``pose`` = the hard-pose images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from tfface.errors import DataError
from tfface.methods.ddl.config import DDLDataSpec, DDLEvalSpec
from tfface.methods.ddl.data import downsample

__all__ = ["TestSets", "builtin_test_sets", "real_test_sets"]


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
