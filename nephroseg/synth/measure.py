"""Measurements taken from a label map, as a radiologist would report them in kits.json."""

from __future__ import annotations

import contextlib

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist, squareform

MAX_POINTS_BRUTE = 3000  # above this, search the convex hull's vertices only


def feret_diameter_mm(points_mm: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """Largest distance across a set of voxels (centres in mm), plus one voxel along that direction.

    Adding the voxel's own extent makes a single voxel measure its size rather than zero.
    """
    if len(points_mm) == 0:
        return 0.0
    if len(points_mm) == 1:
        return float(max(spacing))
    candidates = points_mm
    if len(points_mm) > MAX_POINTS_BRUTE:
        with contextlib.suppress(QhullError):  # flat or degenerate: fall back to subsampling
            candidates = points_mm[ConvexHull(points_mm).vertices]
    if len(candidates) > MAX_POINTS_BRUTE:
        step = int(np.ceil(len(candidates) / MAX_POINTS_BRUTE))
        candidates = candidates[::step]
    distances = squareform(pdist(candidates))
    i, j = np.unravel_index(int(np.argmax(distances)), distances.shape)
    direction = candidates[j] - candidates[i]
    length = float(np.linalg.norm(direction))
    unit = direction / length if length > 0 else np.array([0.0, 0.0, 1.0])
    return length + float(np.abs(unit) @ np.asarray(spacing))


def largest_tumor_diameter_mm(label: np.ndarray, spacing: tuple[float, float, float]) -> float | None:
    """Largest 3-D diameter over the connected tumor (label 2) components; None without tumor."""
    tumor = label == 2
    crop = ndi.find_objects(tumor.astype(np.uint8))
    if not crop:
        return None
    components, _ = ndi.label(tumor[crop[0]])
    best = 0.0
    for index, box in enumerate(ndi.find_objects(components), start=1):
        piece = components[box] == index
        surface = piece & ~ndi.binary_erosion(piece)
        offset = np.array([b.start for b in box])
        points = (np.argwhere(surface) + offset) * np.asarray(spacing)
        best = max(best, feret_diameter_mm(points, spacing))
    return best


def radiographic_size_cm(label: np.ndarray, spacing: tuple[float, float, float]) -> float | None:
    """kits.json's ``radiographic_size``: the largest tumor diameter in cm, one decimal."""
    diameter = largest_tumor_diameter_mm(label, spacing)
    return None if diameter is None else round(diameter / 10.0, 1)
