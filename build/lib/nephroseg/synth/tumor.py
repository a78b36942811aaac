"""Kidney tumors: subtype-dependent enhancement, endophytic to exophytic growth, lobulated outline,
heterogeneous texture and a necrotic core when large.

Enhancement follows the usual CT appearance of each histology relative to the kidney; about a
quarter of tumors are drawn nearly iso-dense to the parenchyma so that they are not trivial to see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nephroseg.synth.intensity import KIDNEY_CLASSES, Tissue, tissue_set
from nephroseg.synth.kidney import Kidney
from nephroseg.synth.shapes import (
    Box,
    Grid,
    Vec,
    ellipsoid_level,
    frame,
    half_extent,
    local_coords,
    put,
    smooth_field,
)

# Of the 30 tumors in KiTS19 cases 0–29, 27 % lie medial of their kidney's centre by more than a
# quarter of its half-width, 57 % lateral (bench/kidney_shapes.py); anchors on the medial half give that.
MEDIAL_SHARE = 0.3

# What a tumor may grow into: kidney, fat and soft organs; never bone, muscle, great vessels or wall.
TUMOR_ROOM = tissue_set(
    *KIDNEY_CLASSES,
    Tissue.PERIRENAL_FAT,
    Tissue.VISCERAL_FAT,
    Tissue.LIVER,
    Tissue.SPLEEN,
    Tissue.PANCREAS,
    Tissue.BOWEL_WALL,
    Tissue.BOWEL_FLUID,
    Tissue.FECES,
    Tissue.GAS,
    Tissue.URETER,
    Tissue.RENAL_VEIN,
)
LOBULATION = 0.12  # tumor surface irregularity, as a fraction of its radius per field SD


@dataclass(frozen=True)
class TumorLook:
    """How a tumor enhances and what it is made of; drawn per tumor from its subtype."""

    mean_hu: float
    texture_sd: float  # heterogeneity (HU)
    texture_mm: float  # grain of the heterogeneity
    necrosis: float  # necrotic core as a fraction of the radius (0 = none)
    fat: float  # fraction of macroscopic fat (angiomyolipoma)
    iso: bool  # nearly iso-dense to the parenchyma


SUBTYPES = (
    "clear_cell_rcc",
    "papillary",
    "chromophobe",
    "oncocytoma",
    "angiomyolipoma",
    "clear_cell_papillary_rcc",
)
SUBTYPE_WEIGHTS = (0.68, 0.11, 0.09, 0.05, 0.04, 0.03)
BENIGN = ("oncocytoma", "angiomyolipoma", "mest")  # mest: mixed epithelial and stromal tumor


def draw_tumor_look(
    rng: np.random.Generator, subtype: str, parenchyma_hu: float, diameter_mm: float
) -> TumorLook:
    """Mostly hypo-enhancing relative to the kidney, but about a quarter nearly iso-dense."""
    u = rng.uniform
    necrosis = fat = 0.0
    if subtype == "clear_cell_rcc":
        mean, sd, grain = u(60, 150), u(12, 30), u(4, 9)
        if rng.random() < np.clip((diameter_mm - 30.0) / 40.0, 0.0, 0.85):
            necrosis = u(0.3, 0.6)
    elif subtype == "papillary":
        mean, sd, grain = u(30, 70), u(4, 10), u(5, 10)
        necrosis = u(0.2, 0.4) if diameter_mm > 40 and rng.random() < 0.2 else 0.0
    elif subtype == "chromophobe":
        mean, sd, grain = u(60, 110), u(5, 12), u(5, 10)
    elif subtype == "oncocytoma":
        mean, sd, grain = u(80, 140), u(6, 14), u(5, 10)
        necrosis = u(0.15, 0.3) if diameter_mm > 30 and rng.random() < 0.3 else 0.0  # central scar
    elif subtype == "angiomyolipoma":
        mean, sd, grain = u(40, 90), u(10, 20), u(3, 7)
        fat = u(0.1, 0.45)
    else:
        mean, sd, grain = u(50, 100), u(6, 14), u(5, 10)
    iso = subtype != "angiomyolipoma" and rng.random() < 0.25
    if iso:
        mean, sd = parenchyma_hu - u(-5, 18), sd * 0.6
    mean = float(np.clip(min(mean, parenchyma_hu + 10.0), 20.0, 260.0))
    return TumorLook(mean, sd, grain, necrosis, fat, iso)


@dataclass(frozen=True)
class Tumor:
    """A lobulated ellipsoidal mass anchored on a kidney, with its own tissue class and texture."""

    tissue: int  # Tissue.TUMOR + index
    center: Vec
    radii: Vec
    axes: np.ndarray
    look: TumorLook
    growth: str  # "endophytic", "mixed" or "exophytic"
    seed: int

    @property
    def diameter_mm(self) -> float:
        return 2.0 * max(self.radii)

    def _box(self, grid: Grid) -> Box | None:
        return grid.box(self.center, half_extent(self.radii, self.axes) * (1.0 + LOBULATION * 2.5) + 1.0)

    def _level(self, grid: Grid, box: Box) -> tuple[np.ndarray, np.random.Generator]:
        rng = np.random.default_rng(self.seed)
        level = np.sqrt(ellipsoid_level(local_coords(grid, box, self.center, self.axes), self.radii))
        cell = tuple(0.6 * min(self.radii) / s for s in grid.spacing)
        return level + np.float32(LOBULATION) * np.clip(smooth_field(rng, level.shape, cell), -2.5, 2.5), rng

    def paint(self, tissue: np.ndarray, grid: Grid) -> None:
        box = self._box(grid)
        if box is None:
            return
        level, rng = self._level(grid, box)
        inside = level < 1.0
        cls = np.full(inside.shape, self.tissue, dtype=np.uint8)
        if self.look.necrosis > 0:
            ragged = level + np.float32(0.12) * smooth_field(
                rng, level.shape, tuple(4.0 / s for s in grid.spacing)
            )
            cls[ragged < self.look.necrosis] = Tissue.NECROSIS
        if self.look.fat > 0:
            blobs = smooth_field(
                rng, level.shape, tuple(self.look.texture_mm * 1.5 / s for s in grid.spacing)
            )
            cls[blobs > np.quantile(blobs, 1.0 - self.look.fat)] = Tissue.TUMOR_FAT
        put(tissue, box, inside, cls, TUMOR_ROOM)
        centre = grid.index_of(self.center)  # a tumor never vanishes between voxel centres
        if centre is not None:
            tissue[centre] = cls[tuple(i - s.start for i, s in zip(centre, box, strict=True))]

    def texture(self, hu: np.ndarray, tissue: np.ndarray, grid: Grid) -> None:
        """Heterogeneous enhancement over the viable tumor: add a smooth random field."""
        box = self._box(grid)
        if box is None:
            return
        add_texture(hu, tissue, box, self.tissue, self.look, grid.spacing, self.seed + 1)


def add_texture(
    hu: np.ndarray, tissue: np.ndarray, box: Box, tissue_class: int, look: TumorLook, spacing: Vec, seed: int
) -> None:
    """Heterogeneous enhancement: a smooth random field added over one tumor class in its box."""
    sub = tissue[box]
    mask = sub == tissue_class
    if not mask.any():
        return
    rng = np.random.default_rng(seed)
    field = smooth_field(rng, sub.shape, tuple(look.texture_mm / s for s in spacing))
    hu[box][mask] += np.float32(look.texture_sd) * field[mask]


def plan_tumor(
    rng: np.random.Generator,
    index: int,
    kidney: Kidney,
    subtype: str,
    parenchyma_hu: float,
    z_range: tuple[float, float],
    main: bool,
) -> Tumor:
    """Size from the KiTS19 spread (1–10 cm, the first tumor the largest); anchor on the cortex, on
    the medial half (beside the hilum) for ``MEDIAL_SHARE`` of the tumors as in the KiTS19 masks,
    else mostly the lateral half, never facing backward onto the spine; growth from fully
    endophytic to mostly exophytic."""
    u = rng.uniform
    if main:
        pick = rng.random()
        diameter = u(10, 30) if pick < 0.35 else u(30, 60) if pick < 0.8 else u(60, 100)
    else:
        diameter = u(10, 35)
    radii = np.array([diameter / 2 * u(0.85, 1.15) for _ in range(3)])
    radii *= diameter / 2 / radii.max()
    growth = str(rng.choice(["endophytic", "mixed", "exophytic"], p=[0.3, 0.4, 0.3]))
    offset = {"endophytic": u(-0.9, -0.5), "mixed": u(-0.5, 0.1), "exophytic": u(0.1, 0.6)}[growth]
    medial = rng.random() < MEDIAL_SHARE
    fallback = None
    for _ in range(60):
        direction = rng.normal(size=3)
        # Local w points laterally: the medial half (hilum side), or mostly the lateral half.
        direction[2] = -abs(direction[2]) if medial else abs(direction[2]) * 1.5 - 0.2
        point, normal = kidney.surface_point(direction)
        center = point + normal * offset * diameter / 2
        in_scan = z_range[0] <= center[0] <= z_range[1]
        toward_spine = normal[1] > 0.6 or (not medial and normal[2] * kidney.side < -0.6)
        if in_scan and not toward_spine:
            break
        fallback = center if in_scan or fallback is None else fallback
    else:
        center = fallback
    center[0] = np.clip(center[0], *z_range)
    axes = frame(rng.normal(size=3), rng.normal(size=3))
    look = draw_tumor_look(rng, subtype, parenchyma_hu, diameter)
    return Tumor(
        int(Tissue.TUMOR + index), tuple(center), tuple(radii), axes, look, growth, int(rng.integers(2**31))
    )
