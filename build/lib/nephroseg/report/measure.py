"""Clinical measurements from a canonical KiTS label map: volumes, tumor sizes, sides.

Arrays are canonical (slice, row, column) in I-P-L orientation, so columns run from patient right
(column 0) to patient left, and ``spacing`` is the voxel size in mm along those axes. Distances are
measured between voxel centres: a lesion that spans n voxels along an axis measures (n - 1) voxels,
which can fall short of its edge-to-edge extent by up to one voxel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import cdist

KIDNEY, TUMOR = 1, 2
MM3_PER_ML = 1000.0
CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)
_PAIRWISE_CHUNK = 1024  # rows per distance block, so a degenerate fallback cannot exhaust memory


@dataclass(frozen=True)
class TumorFinding:
    """One connected tumor lesion, sized the way a radiologist would report it."""

    volume_ml: float
    voxel_count: int
    axial_diameter_mm: float  # longest in-plane diameter over the lesion's axial slices
    axial_diameter_slice: int  # the slice where that diameter lies
    diameter_3d_mm: float  # longest distance between two voxel centres of the lesion
    centroid_voxel: tuple[float, float, float]  # (slice, row, column) indices
    side: str  # patient "right" or "left"
    slice_range: tuple[int, int]  # first and last axial slice, inclusive
    overlaps_true_tumor: bool | None = None  # with ground truth: whether any voxel is true tumor

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def structure_volumes_ml(label: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Volumes of kidney (label 1), tumor (label 2) and both together, in millilitres."""
    label = _checked_label(label)
    voxel_ml = voxel_volume_ml(spacing)
    kidney = int(np.count_nonzero(label == KIDNEY))
    tumor = int(np.count_nonzero(label == TUMOR))
    return {
        "kidney": kidney * voxel_ml,
        "tumor": tumor * voxel_ml,
        "kidney_tumor": (kidney + tumor) * voxel_ml,
    }


def kidney_side_volumes_ml(label: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Kidney+tumor volume of the patient's right and left kidney, in millilitres.

    Each 26-connected component of kidney-or-tumor voxels goes wholly to the side of its centroid,
    so a tumor bulging past the midline stays with its kidney; the two values sum to the total.
    """
    label = _checked_label(label)
    voxel_ml = voxel_volume_ml(spacing)
    components, _ = ndimage.label(label > 0, structure=CONNECTIVITY_26)
    volumes = {"right": 0.0, "left": 0.0}
    for number, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        columns = np.nonzero(components[box] == number)[2] + box[2].start
        volumes[side_of(float(columns.mean()), label.shape[2])] += columns.size * voxel_ml
    return volumes


def tumor_findings(
    label: np.ndarray,
    spacing: Sequence[float],
    min_volume_ml: float = 0.05,
    truth: np.ndarray | None = None,
) -> list[TumorFinding]:
    """Connected tumor lesions (26-connectivity), largest first; specks below ``min_volume_ml`` are
    left out because a few stray voxels are segmentation noise, not a finding. With ``truth`` (a
    label map on the same grid) each finding says whether it touches a true tumor."""
    label = _checked_label(label)
    spacing_mm = _checked_spacing(spacing)
    voxel_ml = voxel_volume_ml(spacing_mm)
    true_tumor = None if truth is None else _same_grid(truth, label) == TUMOR
    findings = []
    for box, lesion in _lesions(label == TUMOR, voxel_ml, min_volume_ml):
        voxel_count = int(np.count_nonzero(lesion))
        offset = np.array([s.start for s in box], dtype=np.float64)
        centroid = np.argwhere(lesion).mean(axis=0) + offset
        axial_mm, axial_slice = max_axial_diameter_mm(lesion, spacing_mm[1:])
        findings.append(
            TumorFinding(
                volume_ml=voxel_count * voxel_ml,
                voxel_count=voxel_count,
                axial_diameter_mm=axial_mm,
                axial_diameter_slice=axial_slice + box[0].start,
                diameter_3d_mm=max_diameter_mm(lesion, spacing_mm),
                centroid_voxel=(float(centroid[0]), float(centroid[1]), float(centroid[2])),
                side=side_of(centroid[2], label.shape[2]),
                slice_range=(box[0].start, box[0].stop - 1),
                overlaps_true_tumor=None if true_tumor is None else bool(true_tumor[box][lesion].any()),
            )
        )
    return sorted(findings, key=lambda f: f.volume_ml, reverse=True)


def tumor_detection(
    prediction: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    min_volume_ml: float = 0.05,
    findings: Sequence[TumorFinding] | None = None,
) -> dict[str, int]:
    """Lesion by lesion, as a reader counts them: the true tumors (26-connected, specks below
    ``min_volume_ml`` left out), how many of them the prediction found (any voxel called tumor), and
    the predicted tumors that touch no true tumor (false findings). The Dice scores cannot tell a
    missed 1 ml tumor from a slightly small large one; these counts can. ``findings``: the
    prediction's, already measured against ``truth`` (``tumor_findings``), so as not to find them again."""
    prediction, truth = _checked_label(prediction), _same_grid(truth, prediction)
    voxel_ml = voxel_volume_ml(spacing)
    predicted, true = prediction == TUMOR, truth == TUMOR
    true_lesions = list(_lesions(true, voxel_ml, min_volume_ml))
    found = sum(bool(predicted[box][lesion].any()) for box, lesion in true_lesions)
    if findings is not None:
        false = sum(f.overlaps_true_tumor is False for f in findings)
    else:
        lesions = _lesions(predicted, voxel_ml, min_volume_ml)
        false = sum(not true[box][lesion].any() for box, lesion in lesions)
    return {"true_tumors": len(true_lesions), "true_tumors_found": found, "false_tumors": false}


def _lesions(mask: np.ndarray, voxel_ml: float, min_volume_ml: float):
    """(bounding box, mask of the lesion inside it) of each 26-connected component of ``mask`` of at
    least ``min_volume_ml``."""
    components, _ = ndimage.label(mask, structure=CONNECTIVITY_26)
    for number, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        lesion = components[box] == number
        if np.count_nonzero(lesion) * voxel_ml >= min_volume_ml:
            yield box, lesion


def _same_grid(truth: np.ndarray, label: np.ndarray) -> np.ndarray:
    truth = np.asarray(truth)
    if truth.shape != np.shape(label):
        raise ValueError(f"ground truth shape {truth.shape} differs from the label map's {np.shape(label)}")
    return truth


def side_of(column: float, n_columns: int) -> str:
    """Patient side of a column index: columns run patient right → left about the volume centre."""
    return "right" if column < (n_columns - 1) / 2.0 else "left"


def max_axial_diameter_mm(mask: np.ndarray, pixel_spacing: Sequence[float]) -> tuple[float, int]:
    """Longest in-plane diameter (mm) over the axial slices of a 3D mask, and the slice index."""
    scale = np.asarray(pixel_spacing, dtype=np.float64)
    best, best_slice = 0.0, 0
    for z, plane in enumerate(np.asarray(mask, dtype=bool)):
        if not plane.any():
            continue
        diameter = _diameter(_boundary_points(plane) * scale)
        if diameter > best:
            best, best_slice = diameter, z
    return best, best_slice


def max_diameter_mm(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Longest distance (mm) between two voxel centres of a mask, in any direction."""
    mask = np.asarray(mask, dtype=bool)
    return _diameter(_boundary_points(mask) * np.asarray(spacing, dtype=np.float64))


def _boundary_points(mask: np.ndarray) -> np.ndarray:
    """Indices of mask voxels touching the outside: the farthest pair always lies among them."""
    interior = ndimage.binary_erosion(mask, border_value=0)
    return np.argwhere(mask & ~interior).astype(np.float64)


def _diameter(points: np.ndarray) -> float:
    """Largest pairwise distance, searched on the convex hull's vertices to stay fast."""
    if len(points) < 2:
        return 0.0
    candidates = points
    if len(points) > points.shape[1] + 1:
        candidates = points[_hull_vertices(points)]
    return _max_pairwise_distance(candidates)


def _hull_vertices(points: np.ndarray) -> np.ndarray:
    """Hull vertex indices; flat or collinear sets (one slice, a line) are joggled, else all points."""
    for options in (None, "QJ"):
        try:
            return ConvexHull(points, qhull_options=options).vertices
        except (QhullError, ValueError):
            continue
    return np.arange(len(points))


def _max_pairwise_distance(points: np.ndarray) -> float:
    best = 0.0
    for start in range(0, len(points), _PAIRWISE_CHUNK):
        block = cdist(points[start : start + _PAIRWISE_CHUNK], points)
        best = max(best, float(block.max()))
    return best


def _checked_label(label: np.ndarray) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim != 3:
        raise ValueError(f"label map must be 3D (slice, row, column), got shape {label.shape}")
    return label


def _checked_spacing(spacing: Sequence[float]) -> np.ndarray:
    spacing_mm = np.asarray(spacing, dtype=np.float64)
    if spacing_mm.shape != (3,) or not np.all(np.isfinite(spacing_mm)) or np.any(spacing_mm <= 0):
        raise ValueError(f"spacing must be three positive sizes in mm, got {tuple(np.ravel(spacing))}")
    return spacing_mm


def voxel_volume_ml(spacing: Sequence[float]) -> float:
    """One voxel's volume in millilitres, from its (slice, row, column) size in mm."""
    return float(np.prod(_checked_spacing(spacing))) / MM3_PER_ML
