"""Measurements taken from a label map, as a radiologist would report them in kits.json."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

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


@dataclass(frozen=True)
class KidneyShape:
    """One kidney (a connected component of label > 0): what tells a phantom kidney from a real one."""

    volume_ml: float  # kidney and tumor
    kidney_ml: float  # label 1 only
    tumor_ml: float
    axial_solidity: float  # area over convex-hull area, mean over the middle half of its slices
    extents_mm: tuple[float, float, float]  # along its principal axes, longest first (0.5–99.5 %)
    # Where its tumor sits across the kidney: the tumor's centroid minus the kidney's (label 1) along
    # x, toward the volume's midline, in half-widths of the kidney along x (> 0 medial, toward the
    # hilum and spine; < 0 lateral); None without tumor.
    tumor_medial: float | None = None


def kidney_shapes(
    label: np.ndarray, spacing: tuple[float, float, float], min_ml: float = 20.0
) -> list[KidneyShape]:
    """The two largest components of ``label > 0`` (z, y, x) of at least ``min_ml``, largest first.

    Axial solidity measures the renal sinus notch: a deep hilum makes a C in the axial slice. Pixels
    count as squares (the hull spans their corners), so a filled rectangle scores exactly 1.
    """
    foreground = label > 0
    components, count = ndi.label(foreground)
    if count == 0:
        return []
    voxel_ml = float(np.prod(spacing)) / 1000.0
    sizes = ndi.sum(foreground, components, range(1, count + 1))
    boxes = ndi.find_objects(components)
    shapes = []
    for index in np.argsort(-sizes)[:2]:
        if sizes[index] * voxel_ml < min_ml:
            continue
        box = boxes[index]
        piece = components[box] == index + 1
        sub = label[box]
        slices = np.nonzero(piece.any(axis=(1, 2)))[0]
        middle = slices[len(slices) // 4 : 3 * len(slices) // 4 + 1]
        solidity = [_area_solidity(piece[z]) for z in middle if piece[z].sum() >= 3]
        midline = label.shape[2] / 2.0 - box[2].start
        shapes.append(
            KidneyShape(
                volume_ml=float(piece.sum()) * voxel_ml,
                kidney_ml=float((piece & (sub == 1)).sum()) * voxel_ml,
                tumor_ml=float((piece & (sub == 2)).sum()) * voxel_ml,
                axial_solidity=float(np.mean(solidity)) if solidity else 1.0,
                extents_mm=_principal_extents(np.argwhere(piece) * np.asarray(spacing)),
                tumor_medial=_tumor_medial(piece & (sub == 1), piece & (sub == 2), midline),
            )
        )
    return shapes


def _tumor_medial(kidney: np.ndarray, tumor: np.ndarray, midline: float) -> float | None:
    if not tumor.any() or not kidney.any():
        return None
    kidney_x, tumor_x = np.nonzero(kidney)[2], np.nonzero(tumor)[2]
    centre = kidney_x.mean()
    half_width = (kidney_x.max() - kidney_x.min() + 1) / 2.0
    return float((tumor_x.mean() - centre) * np.sign(midline - centre) / half_width)


def _area_solidity(mask: np.ndarray) -> float:
    pixels = np.argwhere(mask).astype(float)
    offsets = ((-0.5, -0.5), (-0.5, 0.5), (0.5, -0.5), (0.5, 0.5))
    corners = np.concatenate([pixels + offset for offset in offsets])
    try:
        hull_area = ConvexHull(corners).volume  # a 2-D hull's "volume" is its area
    except QhullError:
        return 1.0
    return float(mask.sum()) / hull_area


def _principal_extents(points_mm: np.ndarray) -> tuple[float, float, float]:
    centred = points_mm - points_mm.mean(axis=0)
    _, axes = np.linalg.eigh(np.cov(centred.T))
    projected = centred @ axes
    extent = np.percentile(projected, 99.5, axis=0) - np.percentile(projected, 0.5, axis=0)
    longest_first = sorted((float(e) for e in extent), reverse=True)
    return (longest_first[0], longest_first[1], longest_first[2])
