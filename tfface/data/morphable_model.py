"""The built-in 3D morphable model: a reduced copy of the MIT-licensed ICT Face Model Light.

A face mesh is ``neutral + sum_i w_id[i] * identity_deltas[i] + sum_j w_ex[j] * expression_deltas[j]``
with identity weights ~ N(0, 1) and expression weights in [0, 1] (ICT-FaceKit's convention).

The package ships ``assets/ict_face_light_reduced.npz``, made from the upstream face-and-head region by
:func:`build_reduced_asset`: vertex-clustering decimation (each cluster keeps its original vertex nearest
to the cluster mean, so the linear model stays exact on the kept vertices), the first
``n_identity`` identity modes, all expression shapes, stored as float16. Licence and attribution:
``assets/LICENSE-ICT-FaceKit`` and ``assets/NOTICE.md``.

Rebuild it from the upstream file (a path, never committed data)::

    python -m tfface.data.morphable_model /path/to/ict_face_model_light_face_head_region.npz
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tfface.atomic import atomic_path
from tfface.errors import DataError

ASSET_NAME = "ict_face_light_reduced.npz"
_FACE_REGION_END = 9409  # ICT-FaceKit: vertices [0, 9408] are the face, [9409, 11247] head and neck
REGION_FACE, REGION_HEAD, REGION_EYE, REGION_MOUTH = 0, 1, 2, 3


@dataclass(frozen=True, eq=False)
class MorphableModel:
    """A linear 3D morphable model (shape only), in centimetres, y up, z towards the viewer."""

    mean: np.ndarray  # (V, 3) float32
    identity_basis: np.ndarray  # (K, V, 3) float32
    expression_basis: np.ndarray  # (E, V, 3) float32
    triangles: np.ndarray  # (T, 3) int32, counter-clockwise seen from outside
    landmarks68: np.ndarray  # (68,) int32 vertex indices, Multi-PIE 68-point order
    region: np.ndarray  # (V,) int8: REGION_FACE, REGION_HEAD, REGION_EYE, REGION_MOUTH
    expression_names: tuple[str, ...]

    @property
    def num_vertices(self) -> int:
        return int(self.mean.shape[0])

    @property
    def num_identity(self) -> int:
        return int(self.identity_basis.shape[0])

    @property
    def num_expression(self) -> int:
        return int(self.expression_basis.shape[0])

    @functools.cached_property
    def _id_flat(self) -> np.ndarray:
        return self.identity_basis.reshape(self.num_identity, -1)

    @functools.cached_property
    def _ex_flat(self) -> np.ndarray:
        return self.expression_basis.reshape(self.num_expression, -1)

    def shape(self, identity: np.ndarray, expression: np.ndarray | None = None) -> np.ndarray:
        """Vertices (V, 3) for identity weights (K,) and optional expression weights (E,)."""
        identity = np.asarray(identity, np.float32)
        if identity.shape != (self.num_identity,):
            raise DataError(f"identity weights: expected shape ({self.num_identity},), got {identity.shape}")
        flat = self.mean.reshape(-1) + identity @ self._id_flat
        if expression is not None:
            expression = np.asarray(expression, np.float32)
            if expression.shape != (self.num_expression,):
                raise DataError(
                    f"expression weights: expected shape ({self.num_expression},), got {expression.shape}"
                )
            flat = flat + expression @ self._ex_flat
        return flat.reshape(-1, 3)


def _asset_path() -> Path:
    return Path(str(resources.files("tfface.data.assets").joinpath(ASSET_NAME)))


@functools.lru_cache(maxsize=2)
def load_morphable_model(path: str | None = None) -> MorphableModel:
    """Load the shipped reduced ICT model (or a file written by :func:`build_reduced_asset`)."""
    p = Path(path) if path else _asset_path()
    if not p.is_file():
        raise DataError(f"morphable model file not found: {p}")
    with np.load(p, allow_pickle=False) as d:
        missing = {"mean", "identity_basis", "expression_basis", "triangles", "landmarks68", "region"} - set(
            d.files
        )
        if missing:
            raise DataError(f"{p}: missing fields {sorted(missing)}")
        return MorphableModel(
            mean=d["mean"].astype(np.float32),
            identity_basis=d["identity_basis"].astype(np.float32),
            expression_basis=d["expression_basis"].astype(np.float32),
            triangles=d["triangles"].astype(np.int32),
            landmarks68=d["landmarks68"].astype(np.int32),
            region=d["region"].astype(np.int8),
            expression_names=tuple(str(s) for s in d["expression_names"]),
        )


def _cluster(vertices: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering on a grid: returns (representative original index per cluster, cluster of each vertex)."""
    keys = np.floor((vertices - vertices.min(0)) / cell).astype(np.int64)
    _, cluster = np.unique(keys, axis=0, return_inverse=True)
    cluster = cluster.reshape(-1)
    n = cluster.max() + 1
    counts = np.bincount(cluster, minlength=n)
    centroid = np.stack([np.bincount(cluster, vertices[:, i], minlength=n) for i in range(3)], 1) / counts[:, None]
    dist = np.linalg.norm(vertices - centroid[cluster], axis=1)
    order = np.lexsort((dist, cluster))  # by cluster, nearest first
    first = np.ones(len(order), bool)
    first[1:] = cluster[order][1:] != cluster[order][:-1]
    rep = order[first]
    return rep, cluster


def _fill_holes(mean, id_b, ex_b, tris, region, lm68):
    """Close every boundary loop but the outer one (the eye and mouth openings, decimation gaps).

    Each loop gets a fan around a new centre vertex whose position and model deltas are the mean of the
    loop's, so the fill follows identity and expression. Fill centres near the eyes are tagged
    REGION_EYE, near the mouth REGION_MOUTH.
    """
    edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    key = edges[:, 0].astype(np.int64) * len(mean) + edges[:, 1]
    rkey = edges[:, 1].astype(np.int64) * len(mean) + edges[:, 0]
    boundary = edges[~np.isin(key, rkey)]
    # Union-find over boundary vertices gives the loops.
    parent = {int(v): int(v) for v in boundary.reshape(-1)}

    def find(v):
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for a, b in boundary:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[ra] = rb
    roots = np.array([find(int(a)) for a in boundary[:, 0]])
    loops = [boundary[roots == r] for r in np.unique(roots)]
    loops.sort(key=len)
    eyes = np.stack([lm68[36:42].mean(0), lm68[42:48].mean(0)])
    mouth = lm68[60:68].mean(0)
    new_mean, new_id, new_ex, new_tris, new_region = [], [], [], [], []
    for loop in loops[:-1]:  # the longest loop is the outer cut of the head and neck
        if len(loop) < 3:
            continue
        vs = np.unique(loop)
        c = len(mean) + len(new_mean)
        centre = mean[vs].mean(0)
        new_mean.append(centre)
        new_id.append(id_b[:, vs].mean(1))
        new_ex.append(ex_b[:, vs].mean(1))
        new_tris.append(np.stack([loop[:, 1], loop[:, 0], np.full(len(loop), c)], 1))
        if np.linalg.norm(eyes - centre, axis=1).min() < 1.5:
            new_region.append(REGION_EYE)
        elif np.linalg.norm(mouth - centre) < 2.5:
            new_region.append(REGION_MOUTH)
        else:
            new_region.append(int(np.bincount(region[vs]).argmax()))
    if not new_mean:
        return mean, id_b, ex_b, tris, region
    return (
        np.concatenate([mean, np.stack(new_mean)]),
        np.concatenate([id_b, np.stack(new_id, 1)], 1),
        np.concatenate([ex_b, np.stack(new_ex, 1)], 1),
        np.concatenate([tris, *new_tris]).astype(np.int32),
        np.concatenate([region, np.array(new_region, np.int8)]),
    )


def build_reduced_asset(
    source: str | Path,
    out: str | Path | None = None,
    target_vertices: int = 3000,
    n_identity: int = 60,
) -> Path:
    """Decimate the upstream ICT face-and-head npz into the shipped asset (float16)."""
    source = Path(source)
    if not source.is_file():
        raise DataError(f"ICT-FaceKit file not found: {source}")
    with np.load(source, allow_pickle=False) as d:
        verts = d["neutral_vertices"].astype(np.float64)
        quads = d["polygons_quads"]
        id_d = d["identity_deltas"][:n_identity]
        ex_d = d["expression_deltas"]
        ex_names = d["expression_names"]
        lm = d["landmark_68_vertex_indices"]
    # Binary search on the grid cell for the target vertex count.
    lo, hi = 0.05, 5.0
    for _ in range(30):
        mid = (lo + hi) / 2
        rep, cluster = _cluster(verts, mid)
        if len(rep) > target_vertices:
            lo = mid
        else:
            hi = mid
    rep, cluster = _cluster(verts, hi)
    tris = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    tris = cluster[tris]
    keep = (tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])
    tris = tris[keep]
    _, uniq = np.unique(np.sort(tris, axis=1), axis=0, return_index=True)
    tris = tris[np.sort(uniq)].astype(np.int32)
    region = (rep >= _FACE_REGION_END).astype(np.int8)
    mean, id_b, ex_b = verts[rep], id_d[:, rep], ex_d[:, rep]
    landmarks = cluster[lm].astype(np.int32)
    mean, id_b, ex_b, tris, region = _fill_holes(mean, id_b, ex_b, tris, region, mean[landmarks])
    out = Path(out) if out else _asset_path()
    with atomic_path(out, suffix=".npz") as tmp:
        np.savez_compressed(
            tmp,
            mean=mean.astype(np.float16),
            identity_basis=id_b.astype(np.float16),
            expression_basis=ex_b.astype(np.float16),
            triangles=tris,
            landmarks68=landmarks,
            region=region,
            expression_names=ex_names,
        )
    load_morphable_model.cache_clear()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=build_reduced_asset.__doc__)
    ap.add_argument("source", help="ict_face_model_light_face_head_region.npz")
    ap.add_argument("--out", default=None)
    ap.add_argument("--target-vertices", type=int, default=3000)
    ap.add_argument("--n-identity", type=int, default=60)
    a = ap.parse_args(argv)
    path = build_reduced_asset(a.source, a.out, a.target_vertices, a.n_identity)
    m = load_morphable_model(str(path))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {m.num_vertices} vertices, "
          f"{len(m.triangles)} triangles, {m.num_identity} identity modes, {m.num_expression} expressions")


if __name__ == "__main__":
    main()
