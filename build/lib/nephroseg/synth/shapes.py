"""Geometric primitives evaluated in millimetres, each only inside its own bounding box.

Coordinates are (z, y, x) in mm: z runs head→feet, y anterior→posterior, x patient right→left,
matching array axes (slice, row, column) of the canonical I-P-L orientation. Restricting every
primitive to its box is what keeps a 512² phantom fast: no organ is evaluated over the whole volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import ndimage as ndi

Box = tuple[slice, slice, slice]
Vec = tuple[float, float, float]


@dataclass(frozen=True)
class Grid:
    """Voxel (k, i, j) sits at world ``origin + (k, i, j) * spacing`` (mm)."""

    shape: tuple[int, int, int]
    spacing: Vec
    origin: Vec

    def axis(self, dim: int, part: slice | None = None) -> np.ndarray:
        n = self.shape[dim]
        index = np.arange(n, dtype=np.float32)[part if part is not None else slice(None)]
        return (self.origin[dim] + index * self.spacing[dim]).astype(np.float32)

    def coords(self, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Open (broadcastable) z, y, x coordinate arrays of a box."""
        z = self.axis(0, box[0])[:, None, None]
        y = self.axis(1, box[1])[None, :, None]
        x = self.axis(2, box[2])[None, None, :]
        return z, y, x

    def box(self, center: Vec | np.ndarray, half: Vec | np.ndarray) -> Box | None:
        """Voxel box covering ``center ± half`` (mm), clipped to the grid; None when outside."""
        slices = []
        for dim in range(3):
            lo = (center[dim] - half[dim] - self.origin[dim]) / self.spacing[dim]
            hi = (center[dim] + half[dim] - self.origin[dim]) / self.spacing[dim]
            start = max(int(np.floor(lo)), 0)
            stop = min(int(np.ceil(hi)) + 1, self.shape[dim])
            if stop <= start:
                return None
            slices.append(slice(start, stop))
        return (slices[0], slices[1], slices[2])

    def index_of(self, point: Vec | np.ndarray) -> tuple[int, int, int] | None:
        """Nearest voxel of a world point, or None outside the grid."""
        index = [round((point[d] - self.origin[d]) / self.spacing[d]) for d in range(3)]
        if all(0 <= index[d] < self.shape[d] for d in range(3)):
            return (index[0], index[1], index[2])
        return None


class Paintable(Protocol):
    """A painting step: writes tissue classes into the part of the volume it covers."""

    def paint(self, tissue: np.ndarray, grid: Grid) -> None: ...


def frame(u: Vec | np.ndarray, w: Vec | np.ndarray) -> np.ndarray:
    """Orthonormal frame whose rows are (u, v, w): u exactly along ``u``, w as close to ``w`` as allowed."""
    u = np.asarray(u, dtype=float)
    u = u / np.linalg.norm(u)
    w = np.asarray(w, dtype=float)
    w = w - (w @ u) * u
    w = w / np.linalg.norm(w)
    return np.stack([u, np.cross(w, u), w])


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random orientation (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))[None, :]


def half_extent(radii: Vec | np.ndarray, rot: np.ndarray | None) -> np.ndarray:
    """Axis-aligned half size of a (rotated) ellipsoid."""
    radii = np.asarray(radii, dtype=float)
    if rot is None:
        return radii
    return np.sqrt(((rot.T * radii[None, :]) ** 2).sum(axis=1))


def local_coords(grid: Grid, box: Box, center: Vec | np.ndarray, rot: np.ndarray | None) -> list[np.ndarray]:
    """Coordinates of a box in a frame centred at ``center`` whose axes are the rows of ``rot``."""
    z, y, x = grid.coords(box)
    dz, dy, dx = z - np.float32(center[0]), y - np.float32(center[1]), x - np.float32(center[2])
    if rot is None:
        return [dz, dy, dx]
    r = rot.astype(np.float32)
    return [r[a, 0] * dz + r[a, 1] * dy + r[a, 2] * dx for a in range(3)]


def ellipsoid_level(local: list[np.ndarray], radii: Vec | np.ndarray) -> np.ndarray:
    """Squared normalised radius: < 1 inside the ellipsoid."""
    return sum((c / np.float32(r)) ** 2 for c, r in zip(local, radii, strict=True))


def ellipsoid_depth(local: list[np.ndarray], radii: Vec | np.ndarray) -> np.ndarray:
    """Approximate distance (mm) to the ellipsoid surface, positive inside (first-order: (1-g)/|∇g|)."""
    g = np.sqrt(ellipsoid_level(local, radii)) + np.float32(1e-6)
    grad = np.sqrt(sum((c / np.float32(r * r)) ** 2 for c, r in zip(local, radii, strict=True))) / g
    return (1.0 - g) / np.maximum(grad, np.float32(1e-6))


def segment_distance(
    grid: Grid, box: Box, p0: Vec | np.ndarray, p1: Vec | np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Distance (mm) from each voxel of a box to segment p0–p1, and the offset from its nearest axis point."""
    p0 = np.asarray(p0, dtype=np.float32)
    axis = np.asarray(p1, dtype=np.float32) - p0
    length2 = max(float(axis @ axis), 1e-6)
    z, y, x = grid.coords(box)
    d = [z - p0[0], y - p0[1], x - p0[2]]
    t = np.clip((d[0] * axis[0] + d[1] * axis[1] + d[2] * axis[2]) / np.float32(length2), 0.0, 1.0)
    offset = [d[a] - t * axis[a] for a in range(3)]
    return np.sqrt(sum(o * o for o in offset)), offset


def capsule_box(grid: Grid, p0: Vec | np.ndarray, p1: Vec | np.ndarray, radius: float) -> Box | None:
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    return grid.box((p0 + p1) / 2, np.abs(p1 - p0) / 2 + radius)


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], cell: tuple[float, ...]) -> np.ndarray:
    """Unit-SD random field with correlation length ``cell`` voxels: coarse noise, spline-upsampled.

    Big boxes (a liver at 0.5 mm slices) are spline-upsampled to a tenth-of-a-cell grid in-plane and
    linearly interpolated from there: spline zooms over 10⁷ voxels would dominate the run time.
    """
    coarse_shape = tuple(max(2, int(np.ceil(n / max(c, 1.0))) + 2) for n, c in zip(shape, cell, strict=True))
    coarse = rng.standard_normal(coarse_shape).astype(np.float32)
    big = np.prod(shape) > 2e6
    step = tuple(max(1, int(c / 10)) if big and axis > 0 else 1 for axis, c in enumerate(cell))
    target = tuple(-(-n // k) for n, k in zip(shape, step, strict=True))
    field = spline_zoom(coarse, target)
    for axis, k in enumerate(step):
        if k > 1:
            field = _upsample_linear(field, axis, k, shape[axis])
    sd = float(field.std())
    return (field - field.mean()) / (sd if sd > 1e-6 else 1.0)


def spline_zoom(coarse: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``ndi.zoom(coarse, order=3, mode="mirror")`` onto ``shape``, one axis at a time.

    A cubic B-spline is a product of 1D splines, so prefiltering and interpolating axis by axis gives
    ``ndi.zoom``'s values (float64 inside, as it computes) with 4 taps per output voxel and axis
    instead of 64 per voxel: about 10× faster on the generator's fields, where the 3D zoom took most
    of the synthesis time.
    """
    field = coarse.astype(np.float64)
    for axis, size in enumerate(shape):
        field = ndi.spline_filter1d(field, 3, axis=axis, mode="mirror")
        field = _cubic_bspline_axis(field, axis, size)
    return field.astype(coarse.dtype)


def _cubic_bspline_axis(coefficients: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Evaluate spline coefficients along ``axis`` at ``ndi.zoom``'s ``size`` sample points (corners
    aligned), indices beyond the edges mirrored as ``mode="mirror"`` does."""
    n = coefficients.shape[axis]
    position = np.arange(size) * ((n - 1) / (size - 1) if size > 1 else 0.0)
    base = np.floor(position).astype(int)
    t = position - base
    weights = (
        (1 - t) ** 3 / 6,
        (3 * t**3 - 6 * t**2 + 4) / 6,
        (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
        t**3 / 6,
    )
    shape = [1] * coefficients.ndim
    shape[axis] = size
    period = max(2 * (n - 1), 1)
    out = np.zeros((*coefficients.shape[:axis], size, *coefficients.shape[axis + 1 :]))
    for offset, weight in enumerate(weights):
        index = np.abs(base + offset - 1) % period
        index = np.where(index >= n, period - index, index)
        out += np.take(coefficients, index, axis=axis) * weight.reshape(shape)
    return out


def _upsample_linear(field: np.ndarray, axis: int, factor: int, size: int) -> np.ndarray:
    """Linear interpolation along one axis onto a grid ``factor`` times finer (cell-centred)."""
    pos = np.clip((np.arange(size) + 0.5) / factor - 0.5, 0, field.shape[axis] - 1)
    lo = np.minimum(pos.astype(int), field.shape[axis] - 2) if field.shape[axis] > 1 else np.zeros(size, int)
    weight = (pos - lo).astype(np.float32)
    shape = [1] * field.ndim
    shape[axis] = size
    weight = weight.reshape(shape)
    a = np.take(field, lo, axis=axis)
    b = np.take(field, np.minimum(lo + 1, field.shape[axis] - 1), axis=axis)
    return a + (b - a) * weight


def superellipse_radius(
    theta: np.ndarray, a: float, b_front: float, b_back: float, p_front: float, p_back: float
) -> np.ndarray:
    """Polar radius of a superellipse whose front (y < 0) and back halves differ in depth and squareness."""
    c, s = np.abs(np.cos(theta)), np.sin(theta)
    back = s > 0
    b = np.where(back, b_back, b_front)
    p = np.where(back, p_back, p_front)
    return 1.0 / ((c / a) ** p + (np.abs(s) / b) ** p) ** (1.0 / p)


# ---- painting ------------------------------------------------------------------------------------


def put(tissue: np.ndarray, box: Box, inside: np.ndarray, value: int | np.ndarray, allowed=None) -> None:
    """Paint ``value`` into ``tissue[box]`` where ``inside``, only over classes marked in ``allowed``.

    ``allowed`` is a 256-entry boolean table (see intensity.tissue_set): organs may displace fat but
    not bone, so painting order plus permissions decide what lies on top.
    """
    sub = tissue[box]
    inside = np.broadcast_to(inside, sub.shape)
    if allowed is not None:
        inside = inside & allowed[sub]
    if isinstance(value, np.ndarray):
        sub[inside] = np.broadcast_to(value, sub.shape)[inside]
    else:
        sub[inside] = value


@dataclass(frozen=True)
class Ellipsoid:
    """A solid (optionally rotated, optionally lobulated) ellipsoid of one tissue class."""

    tissue: int
    center: Vec
    radii: Vec
    rot: np.ndarray | None = None
    allowed: np.ndarray | None = None
    wobble: float = 0.0  # surface irregularity, as a fraction of the radius
    seed: int = 0

    def paint(self, tissue: np.ndarray, grid: Grid) -> None:
        box = grid.box(self.center, half_extent(self.radii, self.rot) * (1 + 3 * self.wobble))
        if box is None:
            return
        level = np.sqrt(ellipsoid_level(local_coords(grid, box, self.center, self.rot), self.radii))
        if self.wobble:
            rng = np.random.default_rng(self.seed)
            cell = tuple(0.5 * min(self.radii) / s for s in grid.spacing)
            level = level + np.float32(self.wobble) * np.clip(smooth_field(rng, level.shape, cell), -3, 3)
        put(tissue, box, level < 1.0, self.tissue, self.allowed)


@dataclass(frozen=True)
class Capsule:
    """A straight tube with round ends: vessels, ureters, pancreas segments."""

    tissue: int
    p0: Vec
    p1: Vec
    radius: float
    allowed: np.ndarray | None = None

    def paint(self, tissue: np.ndarray, grid: Grid) -> None:
        box = capsule_box(grid, self.p0, self.p1, self.radius)
        if box is None:
            return
        dist, _ = segment_distance(grid, box, self.p0, self.p1)
        put(tissue, box, dist < self.radius, self.tissue, self.allowed)


@dataclass(frozen=True)
class ZTube:
    """An elliptic cylinder along z whose centre and radii follow knots (z, y, x, ry, rx).

    Vessels and muscles that run head to feet (aorta, psoas, paraspinals) change size and position
    slowly along z; linear interpolation between a few knots captures that.
    """

    tissue: int
    knots: tuple[tuple[float, float, float, float, float], ...]
    allowed: np.ndarray | None = None

    def paint(self, tissue: np.ndarray, grid: Grid) -> None:
        k = np.asarray(self.knots, dtype=float)
        lo = k[:, [0, 1, 2]] - np.c_[np.zeros(len(k)), k[:, 3], k[:, 4]]
        hi = k[:, [0, 1, 2]] + np.c_[np.zeros(len(k)), k[:, 3], k[:, 4]]
        lo, hi = lo.min(axis=0), hi.max(axis=0)
        box = grid.box((lo + hi) / 2, (hi - lo) / 2)
        if box is None:
            return
        z, y, x = grid.coords(box)
        zs = z[:, 0, 0]
        yc, xc, ry, rx = (
            np.interp(zs, k[:, 0], k[:, c]).astype(np.float32)[:, None, None] for c in (1, 2, 3, 4)
        )
        inside = ((y - yc) / ry) ** 2 + ((x - xc) / rx) ** 2 < 1.0
        inside &= ((zs >= k[0, 0]) & (zs <= k[-1, 0]))[:, None, None]
        put(tissue, box, inside, self.tissue, self.allowed)
