"""Built-in face data: identities of the 3D morphable model rendered under named nuisance factors.

An *identity* is a shape (identity weights ~ N(0, identity_scale^2) on the ICT model's modes) plus an
appearance: skin tone, hair colour and hairline, eyebrow darkness/thickness/height, iris colour, lip
tint, cheek colouring, an optional beard and a few identity-specific skin marks. Appearance is
evaluated per pixel on the rasterised *canonical* (mean-shape) surface position, so features stay
sharp at every resolution and move with the identity's geometry.

An *image* of an identity is drawn under nuisance factors, each a named field of
:class:`NuisanceConfig` and recorded per image in the cache (``nuisance_<name>`` arrays):
``yaw``, ``pitch``, ``roll`` (degrees), ``expression`` weights, ``light_azimuth``,
``light_elevation``, ``light_strength``, ``ambient``, ``background``, ``scale``, ``shift_x``,
``shift_y``, ``blur``, ``noise``, ``resolution_factor`` and the image ``style`` (``photo``,
``sketch`` or ``plain``: a bare 3DMM-style render, see :func:`render_face`). Later methods define hard samples (large |yaw|, resolution_factor 4 or 8), a weak
modality (``style="sketch"``) and domain shifts through these fields.

Everything is deterministic by seed: identity ``i`` draws from ``default_rng([seed, 0, i])`` and its
image ``j`` from ``default_rng([seed, 1, i, j])``, so any subset renders the same wherever it is drawn.
Faces are placed as the ArcFace 5-point template would align them (eyes at 46% of the height,
inter-ocular distance 31% of the width), then jittered by ``scale`` and ``shift``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

from tfface.config import check_range
from tfface.data.morphable_model import (
    REGION_EYE,
    REGION_HEAD,
    REGION_MOUTH,
    MorphableModel,
    load_morphable_model,
)
from tfface.data.render import rasterize, rotation_matrix, vertex_normals
from tfface.errors import ConfigError

#: upper bounds of a rendered set (kept in memory as uint8): beyond them a value can only be a mistake
MAX_IDENTITIES = 10_000_000
MAX_IMAGES = 20_000_000

SUPPORTED_SIZES = (56, 64, 96, 112)
STYLES = ("photo", "sketch", "plain")
BACKGROUNDS = ("random", "plain", "white")
# ArcFace template (112x112): eye centre y and inter-ocular distance, as fractions of the image size.
_EYE_Y, _MOUTH_Y, _IOD = 51.6 / 112, 92.3 / 112, (73.5318 - 38.2946) / 112


@dataclass(frozen=True)
class NuisanceConfig:
    """Ranges of the nuisance factors; a (lo, hi) pair is sampled uniformly per image."""

    yaw: tuple[float, float] = (-35.0, 35.0)
    pitch: tuple[float, float] = (-12.0, 12.0)
    roll: tuple[float, float] = (-8.0, 8.0)
    expression_strength: float = 0.7  # max weight of each active expression shape
    expressions_per_image: int = 3  # how many of the 53 ICT expression shapes are active
    light_azimuth: tuple[float, float] = (-70.0, 70.0)
    light_elevation: tuple[float, float] = (-15.0, 55.0)
    light_strength: tuple[float, float] = (0.45, 1.0)
    ambient: tuple[float, float] = (0.25, 0.6)
    background: str = "random"  # random: colour, gradient and clutter; plain: one colour; white
    scale: tuple[float, float] = (0.92, 1.08)
    shift: tuple[float, float] = (-0.04, 0.04)  # fraction of the image size, x and y
    blur: tuple[float, float] = (0.0, 0.7)  # Gaussian sigma in output pixels
    noise: tuple[float, float] = (0.0, 0.03)  # Gaussian sigma on [0, 1] intensities
    resolution_factors: tuple[int, ...] = (1,)  # downsample by a factor drawn from these, then upsample back
    style: str = "photo"

    def __post_init__(self):
        if self.style not in STYLES:
            raise ConfigError(f"style: {self.style!r} is not one of {STYLES}")
        if self.background not in BACKGROUNDS:
            raise ConfigError(f"background: {self.background!r} is not one of {BACKGROUNDS}")
        for name in ("yaw", "pitch", "roll", "light_azimuth", "light_elevation", "light_strength", "ambient",
                     "scale", "shift", "blur", "noise"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(f"{name}: low {lo} is above high {hi}")
        if not self.resolution_factors or any(int(f) < 1 for f in self.resolution_factors):
            raise ConfigError(f"resolution_factors: need integers >= 1, got {self.resolution_factors}")


@dataclass(frozen=True)
class FaceDataConfig:
    """What to render: which identities, how many images each, at what size, under which nuisances."""

    num_identities: int = 100
    images_per_identity: int = 10
    image_size: int = 112
    seed: int = 0
    identity_offset: int = 0  # first identity index: disjoint sets are drawn with disjoint ranges
    identity_scale: float = 1.0  # std of the identity shape weights
    appearance_scale: float = 1.0  # 0 gives every identity the same appearance (shape-only identities)
    nuisance: NuisanceConfig = field(default_factory=NuisanceConfig)

    def __post_init__(self):
        if self.image_size not in SUPPORTED_SIZES:
            raise ConfigError(f"image_size: {self.image_size} is not one of {SUPPORTED_SIZES}")
        check_range("num_identities", self.num_identities, 1, MAX_IDENTITIES)
        check_range("images_per_identity", self.images_per_identity, 1, 100_000)
        check_range("identity_offset", self.identity_offset, 0, 2**62)
        total = self.num_identities * self.images_per_identity
        if total > MAX_IMAGES:
            raise ConfigError(f"num_identities x images_per_identity: {total:,} images, more than the {MAX_IMAGES:,} "
                              "a rendered set may hold (it is kept in memory); render several sets instead")

    def replace(self, **changes) -> FaceDataConfig:
        nuisance = changes.pop("nuisance", None)
        cfg = dataclasses.replace(self, **changes)
        if isinstance(nuisance, dict):
            nuisance = dataclasses.replace(self.nuisance, **nuisance)
        return dataclasses.replace(cfg, nuisance=nuisance) if nuisance is not None else cfg


@dataclass(frozen=True)
class Identity:
    """One synthetic person: shape weights and appearance parameters."""

    shape: np.ndarray  # (K,)
    skin: np.ndarray  # (3,) RGB albedo
    hair: np.ndarray  # (3,)
    hairline: float  # cm above the brows
    brow_dark: float
    brow_thick: float  # cm
    brow_raise: float  # cm
    iris: np.ndarray  # (3,)
    lips: np.ndarray  # (3,) multiplicative tint
    cheeks: float  # redness
    beard: float  # 0 none .. 1 full
    marks: np.ndarray  # (M, 6): x, y, radius, r, g, b offsets of skin marks


_HAIR = np.array([[0.05, 0.04, 0.035], [0.22, 0.13, 0.07], [0.45, 0.30, 0.15], [0.78, 0.62, 0.38],
                  [0.55, 0.22, 0.08], [0.6, 0.6, 0.6]], np.float32)
_IRIS = np.array([[0.2, 0.11, 0.05], [0.1, 0.06, 0.03], [0.2, 0.3, 0.4], [0.22, 0.28, 0.18]], np.float32)


def sample_identity(model: MorphableModel, rng: np.random.Generator, cfg: FaceDataConfig) -> Identity:
    a = cfg.appearance_scale
    tone = rng.uniform(0, 1)
    skin = (1 - tone) * np.array([0.93, 0.76, 0.64]) + tone * np.array([0.42, 0.27, 0.18])
    skin = 0.8 * np.array([0.78, 0.58, 0.46]) + 0.2 * skin if a == 0 else skin
    skin = skin + a * rng.normal(0, 0.025, 3)
    hair = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.8, 1.2)
    n_marks = rng.integers(2, 6)
    marks = np.concatenate(
        [rng.uniform([-6, -7, 0.4], [6, 6, 1.6], (n_marks, 3)), rng.normal(0, 0.06, (n_marks, 1)) + rng.normal(0, 0.015, (n_marks, 3))], 1
    )

    def mix(value, neutral):  # appearance_scale interpolates towards a shared neutral appearance
        return neutral + a * (np.asarray(value) - neutral)

    return Identity(
        shape=(rng.normal(0, 1, model.num_identity) * cfg.identity_scale).astype(np.float32),
        skin=np.clip(skin, 0.05, 1).astype(np.float32),
        hair=mix(hair, _HAIR[1]).astype(np.float32),
        hairline=float(mix(rng.uniform(3.0, 6.5), 4.5)),
        brow_dark=float(mix(rng.uniform(0.35, 0.85), 0.6)),
        brow_thick=float(mix(rng.uniform(0.3, 0.75), 0.5)),
        brow_raise=float(mix(rng.uniform(-0.3, 0.4), 0.0)),
        iris=mix(_IRIS[rng.integers(len(_IRIS))], _IRIS[0]).astype(np.float32),
        lips=mix(rng.uniform([0.95, 0.55, 0.55], [1.15, 0.85, 0.8]), np.array([1.05, 0.7, 0.68])).astype(np.float32),
        cheeks=float(mix(rng.uniform(0, 0.12), 0.05)),
        beard=float(a * rng.uniform(0.4, 0.9)) if rng.uniform() < 0.3 else 0.0,
        marks=(marks * np.array([1, 1, 1, a, a, a])).astype(np.float32),
    )


@dataclass(frozen=True)
class _Geometry:
    """Canonical landmark geometry of the mean shape, for per-pixel appearance."""

    brows: tuple[np.ndarray, np.ndarray]  # polylines (5, 2) each, x/y
    eyes: np.ndarray  # (2, 2) centres
    eye_outline: tuple[np.ndarray, np.ndarray]
    lip_outer: np.ndarray  # (12, 2)
    lip_inner: np.ndarray  # (8, 2)
    brow_y: float
    chin_y: float
    mouth_y: float
    iod: float  # inter-ocular distance (cm)


@functools.lru_cache(maxsize=4)
def _geometry(model: MorphableModel) -> _Geometry:
    lm = model.mean[model.landmarks68][:, :2]
    eyes = np.stack([lm[36:42].mean(0), lm[42:48].mean(0)])
    return _Geometry(
        brows=(lm[17:22], lm[22:27]),
        eyes=eyes,
        eye_outline=(lm[36:42], lm[42:48]),
        lip_outer=lm[48:60],
        lip_inner=lm[60:68],
        brow_y=float(lm[17:27, 1].mean()),
        chin_y=float(lm[8, 1]),
        mouth_y=float(lm[48:68, 1].mean()),
        iod=float(np.linalg.norm(eyes[1] - eyes[0])),
    )


def _dist_to_polyline(p: np.ndarray, line: np.ndarray) -> np.ndarray:
    a, b = line[:-1], line[1:]
    ab = b - a
    t = np.clip(((p[:, None] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9), 0, 1)
    return np.linalg.norm(p[:, None] - (a + t[..., None] * ab), axis=-1).min(1)


def _inside_polygon(p: np.ndarray, poly: np.ndarray) -> np.ndarray:
    x, y = p[:, 0:1], p[:, 1:2]
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    cross = ((y0 > y) != (y1 > y)) & (x < (x1 - x0) * (y - y0) / np.where(y1 == y0, 1e-9, y1 - y0) + x0)
    return (cross.sum(1) % 2) == 1


def _smooth(edge: np.ndarray, width: float) -> np.ndarray:
    return np.clip(0.5 + edge / max(width, 1e-6), 0, 1)


def _near(xy: np.ndarray, pts: np.ndarray, margin: float) -> np.ndarray:
    """Indices of the points of ``xy`` inside the bounding box of ``pts`` grown by ``margin``."""
    lo, hi = pts.min(0) - margin, pts.max(0) + margin
    return np.nonzero((xy[:, 0] > lo[0]) & (xy[:, 0] < hi[0]) & (xy[:, 1] > lo[1]) & (xy[:, 1] < hi[1]))[0]


def albedo(canon: np.ndarray, region: np.ndarray, ident: Identity, g: _Geometry, plain: bool = False) -> np.ndarray:
    """Per-pixel albedo (N, 3) from canonical positions (N, 3) and region codes (N,); ``plain`` leaves out
    the skin marks, the beard and the scalp hair (skin there), keeping skin tone, cheeks, lips, brows, eyes."""
    xy = canon[:, :2]
    x, y, z = canon[:, 0], canon[:, 1], canon[:, 2]
    col = np.repeat(ident.skin[None], len(canon), 0)
    # Skin marks and cheeks: smooth identity-specific colouring.
    for mx, my, r, dr, dg, db in ([] if plain else ident.marks):
        i = _near(xy, np.array([[mx, my]]), 3 * r)
        w = np.exp(-((x[i] - mx) ** 2 + (y[i] - my) ** 2) / (2 * r * r))[:, None]
        col[i] += w * np.array([dr, dg, db], np.float32)
    for cx in (-g.iod * 0.75, g.iod * 0.75):
        i = _near(xy, np.array([[cx, g.mouth_y + 2.0]]), 4.5)
        w = np.exp(-((x[i] - cx) ** 2 + (y[i] - g.mouth_y - 2.0) ** 2) / 4.0)[:, None]
        col[i] *= 1 + w * np.array([ident.cheeks, -ident.cheeks * 0.6, -ident.cheeks * 0.6], np.float32)
    # Lips.
    i = _near(xy, g.lip_outer, 0.0)
    lips = np.zeros(len(canon), bool)
    lips[i] = _inside_polygon(xy[i], g.lip_outer) & (z[i] > 8)
    col[lips] *= ident.lips
    # Beard: lower face below the mouth and along the jaw, in front.
    if ident.beard > 0 and not plain:
        beard = (y < g.mouth_y + 0.6) & (y > g.chin_y - 3.0) & (region != REGION_HEAD) & ~lips & (z > 3)
        col[beard] = (1 - ident.beard) * col[beard] + ident.beard * ident.hair
    # Eyebrows.
    raise_ = np.array([0, ident.brow_raise], np.float32)
    for line in g.brows:
        i = _near(xy - raise_, line, ident.brow_thick + 0.3)
        d = _dist_to_polyline(xy[i] - raise_, line)
        w = (_smooth(ident.brow_thick - d, 0.15) * ident.brow_dark * (z[i] > 6))[:, None]
        col[i] = (1 - w) * col[i] + w * ident.hair
    # Eyes: sclera, iris and pupil inside the eye openings.
    for outline, centre in zip(g.eye_outline, g.eyes, strict=True):
        i = _near(xy, outline, 0.3)
        r = np.linalg.norm(xy[i] - centre, axis=1)
        inside = _inside_polygon(xy[i], outline) | ((region[i] == REGION_EYE) & (r < g.iod * 0.3))
        sub = col[i]
        sub[inside] = np.array([0.85, 0.82, 0.8], np.float32)
        sub[inside & (r < 0.55)] = ident.iris
        sub[inside & (r < 0.22)] = 0.03
        col[i] = sub
    col[region == REGION_MOUTH] = np.array([0.25, 0.08, 0.08], np.float32)
    # Hair: the scalp above the hairline and the back of the head.
    hair = (region == REGION_HEAD) & ((y > g.brow_y + ident.hairline) | ((z < -1.0) & (y > g.mouth_y)))
    hair |= (y > g.brow_y + ident.hairline + 0.8) & (z < 9)
    col[hair] = ident.skin if plain else ident.hair
    return np.clip(col, 0, 1)


@functools.lru_cache(maxsize=8)
def _upsample_matrix(n: int, size: int) -> np.ndarray:
    """(size, n) linear interpolation matrix from n control points to size samples."""
    pos = np.linspace(0, n - 1, size)
    lo = np.minimum(np.floor(pos).astype(int), n - 2)
    t = pos - lo
    m = np.zeros((size, n), np.float32)
    m[np.arange(size), lo] = 1 - t
    m[np.arange(size), lo + 1] = t
    return m


def _muted(rng: np.random.Generator) -> np.ndarray:
    grey = rng.uniform(0.15, 0.85)
    return np.clip(grey + rng.normal(0, 0.12, 3), 0.05, 0.95).astype(np.float32)


def _background(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    if kind == "white":
        return np.ones((size, size, 3), np.float32)
    base = _muted(rng)
    if kind == "plain":
        return np.broadcast_to(base, (size, size, 3)).copy()
    other = _muted(rng)
    t = np.linspace(0, 1, size, dtype=np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(ang) * t[None, :] + np.sin(ang) * t[:, None]) * 0.5 + 0.25
    img = base + ramp[..., None] * (other - base)
    m = _upsample_matrix(4, size)
    clutter = _separable(rng.normal(0, 0.08, (4, 4, 3)).astype(np.float32), m, m)
    return np.clip(img + clutter, 0, 1)


def sample_nuisance(model: MorphableModel, rng: np.random.Generator, n: NuisanceConfig) -> dict:
    """Draw one image's nuisance parameters (a flat dict of floats and arrays)."""
    expr = np.zeros(model.num_expression, np.float32)
    k = min(n.expressions_per_image, model.num_expression)
    if k and n.expression_strength > 0:
        expr[rng.choice(model.num_expression, k, replace=False)] = rng.uniform(0, n.expression_strength, k)
    u = lambda r: float(rng.uniform(*r))  # noqa: E731
    return {
        "yaw": u(n.yaw), "pitch": u(n.pitch), "roll": u(n.roll), "expression": expr,
        "light_azimuth": u(n.light_azimuth), "light_elevation": u(n.light_elevation),
        "light_strength": u(n.light_strength), "ambient": u(n.ambient),
        "light_color": (1 + rng.normal(0, 0.05, 3)).astype(np.float32),
        "background_seed": int(rng.integers(2**31)),
        "scale": u(n.scale), "shift_x": u(n.shift), "shift_y": u(n.shift),
        "blur": u(n.blur), "noise": u(n.noise),
        "resolution_factor": int(rng.choice(np.asarray(n.resolution_factors))),
        "noise_seed": int(rng.integers(2**31)),
    }


def render_face(
    model: MorphableModel, ident: Identity, nz: dict, size: int, nuisance: NuisanceConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Render one face. Returns (uint8 image (size, size, 3), 5-point landmarks (5, 2) in pixels).

    ``style="plain"`` renders what a 3D morphable model alone gives (GANFaces' synthetic domain): the same
    geometry, pose, expression and Lambertian light, on a black background, without skin marks, beard,
    hair, specular highlight, light colour cast, resolution loss, blur or noise. The nuisance draws are
    the same as for the other styles, so a ``plain`` and a ``photo`` config differing only in ``style``
    give paired renders."""
    g = _geometry(model)
    verts = model.shape(ident.shape, nz["expression"])
    rot = rotation_matrix(nz["yaw"], nz["pitch"], nz["roll"])
    lm = verts[model.landmarks68]
    anchor = 0.5 * (lm[36:48].mean(0) + lm[48:68].mean(0))
    v = (verts - anchor) @ rot.T
    # Weak perspective: the frontal inter-ocular distance maps to the ArcFace template's, times the jitter.
    s = size * _IOD / g.iod * nz["scale"]
    cx = size * (0.5 + nz["shift_x"])
    cy = size * ((_EYE_Y + _MOUTH_Y) / 2 + nz["shift_y"])
    pts = np.stack([cx + s * v[:, 0], cy - s * v[:, 1], v[:, 2]], 1)
    normals = vertex_normals(v, model.triangles)
    attrs = np.concatenate([model.mean, normals, model.region[:, None].astype(np.float32)], 1)
    raster, mask = rasterize(pts, model.triangles, attrs, size, size)
    bg_rng = np.random.default_rng(nz["background_seed"])
    bg_kind = "white" if nuisance.style == "sketch" else nuisance.background
    plain = nuisance.style == "plain"
    img = np.zeros((size, size, 3), np.float32) if plain else _background(bg_rng, size, bg_kind)
    idx = np.nonzero(mask.reshape(-1))[0]
    px = raster.reshape(-1, attrs.shape[1])[idx]
    region = np.rint(px[:, 6]).astype(np.int8)
    alb = albedo(px[:, :3], region, ident, g, plain=plain)
    n = px[:, 3:6] / np.maximum(np.linalg.norm(px[:, 3:6], axis=1, keepdims=True), 1e-6)
    az, el = np.deg2rad(nz["light_azimuth"]), np.deg2rad(nz["light_elevation"])
    light = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)], np.float32)
    ndl = np.clip(n @ light, 0, None)
    half = light + np.array([0, 0, 1], np.float32)
    half /= np.linalg.norm(half)
    spec = 0.12 * nz["light_strength"] * np.clip(n @ half, 0, None) ** 24
    shade = nz["ambient"] + nz["light_strength"] * ndl
    col = alb * shade[:, None] if plain else alb * shade[:, None] * nz["light_color"] + spec[:, None]
    img.reshape(-1, 3)[idx] = np.clip(col, 0, 1)
    lm5 = np.stack([
        pts[model.landmarks68[36:42], :2].mean(0), pts[model.landmarks68[42:48], :2].mean(0),
        pts[model.landmarks68[30], :2], pts[model.landmarks68[48], :2], pts[model.landmarks68[54], :2],
    ]).astype(np.float32)
    if nuisance.style == "sketch":
        img = _sketch(img)
    if plain:
        return (img * 255 + 0.5).astype(np.uint8), lm5
    return _degrade(img, nz, size, grey=nuisance.style == "sketch"), lm5


def _sketch(img: np.ndarray) -> np.ndarray:
    """A pencil-sketch style: grey tones plus difference-of-Gaussians lines on white paper."""
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
    g8 = Image.fromarray((grey * 255).astype(np.uint8))
    a = np.asarray(g8.filter(ImageFilter.GaussianBlur(0.6)), np.float32) / 255
    b = np.asarray(g8.filter(ImageFilter.GaussianBlur(1.8)), np.float32) / 255
    lines = np.clip((b - a) * 6.0, 0, 1)
    tone = 0.55 + 0.45 * np.asarray(g8.filter(ImageFilter.GaussianBlur(2.0)), np.float32) / 255
    s = np.clip(tone - lines, 0, 1)
    return np.repeat(s[..., None], 3, 2)


def _separable(img: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Apply a linear filter separably: rows (H', H) along y and cols (W', W) along x of (H, W, C)."""
    t = np.tensordot(rows, img, axes=(1, 0))  # (H', W, C)
    return np.tensordot(t, cols, axes=(1, 1)).transpose(0, 2, 1)  # (H', W', C)


@functools.lru_cache(maxsize=32)
def _box_matrix(size: int, low: int) -> np.ndarray:
    """(low, size) area-averaging downsampling matrix (anti-aliased)."""
    edges = np.linspace(0, size, low + 1)
    m = np.zeros((low, size), np.float32)
    for i in range(low):
        a, b = edges[i], edges[i + 1]
        for j in range(int(np.floor(a)), int(np.ceil(b))):
            m[i, j] = min(b, j + 1) - max(a, j)
    return m / m.sum(1, keepdims=True)


@functools.lru_cache(maxsize=32)
def _bilinear_matrix(low: int, size: int) -> np.ndarray:
    """(size, low) bilinear upsampling matrix with pixel-centre alignment (as PIL/OpenCV resize)."""
    pos = np.clip((np.arange(size) + 0.5) * low / size - 0.5, 0, low - 1)
    lo = np.minimum(np.floor(pos).astype(int), max(low - 2, 0))
    t = pos - lo
    m = np.zeros((size, low), np.float32)
    m[np.arange(size), lo] += 1 - t
    m[np.arange(size), np.minimum(lo + 1, low - 1)] += t
    return m


def _gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    i = np.arange(size, dtype=np.float32)
    m = np.exp(-((i[:, None] - i[None, :]) ** 2) / (2 * sigma * sigma))
    return m / m.sum(1, keepdims=True)


def _degrade(img: np.ndarray, nz: dict, size: int, grey: bool = False) -> np.ndarray:
    """Resolution loss (area downsampling by the factor, bilinear back up), Gaussian blur, sensor noise."""
    out = img.astype(np.float32)
    f = int(nz["resolution_factor"])
    if f > 1:
        low = max(size // f, 4)
        m = _bilinear_matrix(low, size) @ _box_matrix(size, low)
        out = _separable(out, m, m)
    if nz["blur"] > 0.05:
        g = _gaussian_matrix(size, nz["blur"])
        out = _separable(out, g, g)
    if nz["noise"] > 0:
        shape = out.shape[:2] + (1 if grey else 3,)
        out = out + np.random.default_rng(nz["noise_seed"]).normal(0, nz["noise"], shape).astype(np.float32)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def identity_rng(seed: int, identity: int) -> np.random.Generator:
    return np.random.default_rng([seed, 0, identity])


def image_rng(seed: int, identity: int, image: int) -> np.random.Generator:
    return np.random.default_rng([seed, 1, identity, image])


def render_identity(model: MorphableModel, cfg: FaceDataConfig, identity: int) -> tuple[np.ndarray, np.ndarray, list]:
    """All images of one identity: (images (n, S, S, 3) uint8, landmarks (n, 5, 2), nuisance dicts)."""
    ident = sample_identity(model, identity_rng(cfg.seed, identity), cfg)
    imgs, lms, nzs = [], [], []
    for j in range(cfg.images_per_identity):
        nz = sample_nuisance(model, image_rng(cfg.seed, identity, j), cfg.nuisance)
        img, lm5 = render_face(model, ident, nz, cfg.image_size, cfg.nuisance)
        imgs.append(img)
        lms.append(lm5)
        nzs.append(nz)
    return np.stack(imgs), np.stack(lms), nzs


def default_model() -> MorphableModel:
    return load_morphable_model()
