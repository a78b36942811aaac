"""3D resampling the nnU-Net way, and cropping to the body.

Images: cubic spline (order 3). When the data are anisotropic (one axis more than ``threshold`` times
coarser than the finest), the coarse axis is handled on its own: order 3 within each slice, order 0
(nearest) across slices, as nnU-Net does, so thick slices are not smeared into each other.
Labels: nearest neighbour, or each label interpolated linearly on its own and the largest taken.
Arrays are canonical (z, y, x); shapes follow ``round(n · spacing / target)``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

Shape3 = tuple[int, int, int]
Spacing3 = tuple[float, float, float]


def resampled_shape(shape: tuple[int, ...], spacing: Spacing3, target: Spacing3) -> Shape3:
    return tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target, strict=True))  # type: ignore[return-value]


def anisotropic_axis(spacing: Spacing3, target: Spacing3, threshold: float = 3.0) -> int | None:
    """The axis resampled on its own (order 0 across it), or None for isotropic-enough data."""
    for grid in (spacing, target):
        if max(grid) / min(grid) > threshold:
            return int(np.argmax(grid))
    return None


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output voxel when ``n_in`` voxels cover the same extent as ``n_out``
    (voxel centres, so resampling there and back is the identity where the grids coincide)."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def resample_labels_nearest(labels: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resampling by index lookup: no float copy of the volume is ever made."""
    if tuple(labels.shape) == tuple(out_shape):
        return np.ascontiguousarray(labels)
    index = np.ix_(*(nearest_indices(n, m) for n, m in zip(labels.shape, out_shape, strict=True)))
    return np.ascontiguousarray(labels[index])


def _zoom(array: np.ndarray, out_shape: tuple[int, ...], order: int) -> np.ndarray:
    factors = [m / n for n, m in zip(array.shape, out_shape, strict=True)]
    return ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True, prefilter=order > 1)


def _resample(array: np.ndarray, out_shape: Shape3, order: int, axis: int | None) -> np.ndarray:
    if axis is None:
        return _zoom(array, out_shape, order)
    moved = np.moveaxis(array, axis, 0)
    plane = tuple(out_shape[i] for i in range(3) if i != axis)
    if tuple(moved.shape[1:]) != plane:
        moved = np.stack([_zoom(s, plane, order) for s in moved])
    index = nearest_indices(moved.shape[0], out_shape[axis])
    return np.ascontiguousarray(np.moveaxis(moved[index], 0, axis))


def resample_image(
    array: np.ndarray,
    spacing: Spacing3,
    target: Spacing3,
    *,
    order: int = 3,
    threshold: float = 3.0,
    out_shape: Shape3 | None = None,
) -> np.ndarray:
    """(z, y, x) intensities onto the ``target`` grid (float32)."""
    out_shape = out_shape or resampled_shape(array.shape, spacing, target)
    array = np.asarray(array, dtype=np.float32)
    if tuple(array.shape) == tuple(out_shape):
        return array.copy()
    return _resample(array, out_shape, order, anisotropic_axis(spacing, target, threshold)).astype(np.float32)


def resample_label(
    label: np.ndarray,
    spacing: Spacing3,
    target: Spacing3,
    *,
    method: str = "linear",
    threshold: float = 3.0,
    out_shape: Shape3 | None = None,
) -> np.ndarray:
    """(z, y, x) label map onto the ``target`` grid (uint8). ``linear``: each label value is
    interpolated (order 1) as a float mask and the largest wins; ``nearest``: index lookup."""
    out_shape = out_shape or resampled_shape(label.shape, spacing, target)
    if tuple(label.shape) == tuple(out_shape) or method == "nearest":
        return resample_labels_nearest(np.asarray(label, dtype=np.uint8), out_shape)
    axis = anisotropic_axis(spacing, target, threshold)
    best = np.full(out_shape, -1.0, dtype=np.float32)
    out = np.zeros(out_shape, dtype=np.uint8)
    # Exact ties (a voxel centred on a boundary, as every one is when halving the resolution) go to
    # the later label on a checkerboard and the earlier one elsewhere: a fixed preference would
    # shrink or grow every structure by a rim.
    checker = (np.indices(out_shape).sum(axis=0) % 2).astype(bool)
    for value in np.unique(label):
        score = _resample((label == value).astype(np.float32), out_shape, 1, axis)
        wins = (score > best) | ((score == best) & checker)
        out[wins], best[wins] = value, score[wins]
    return out


def body_box(hu: np.ndarray, threshold_hu: float = -500.0) -> tuple[slice, slice, slice]:
    """Bounding box of the voxels above ``threshold_hu`` (the body, not the air around it); the whole
    volume when none is."""
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero((hu > threshold_hu).any(axis=other))
        if hits.size == 0:
            return (slice(None), slice(None), slice(None))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)  # type: ignore[return-value]


def box_with_margin(mask: np.ndarray, margin: tuple[int, int, int]) -> tuple[slice, slice, slice] | None:
    """Bounding box of ``mask`` grown by ``margin`` voxels per axis (clipped); None for an empty mask."""
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return None
        lo = max(0, int(hits[0]) - margin[axis])
        hi = min(mask.shape[axis], int(hits[-1]) + 1 + margin[axis])
        box.append(slice(lo, hi))
    return tuple(box)  # type: ignore[return-value]


def box_bounds(box: tuple[slice, slice, slice], shape: tuple[int, ...]) -> list[list[int]]:
    """[[start, stop], ...] of a box, for JSON."""
    return [list(s.indices(n)[:2]) for s, n in zip(box, shape, strict=True)]
