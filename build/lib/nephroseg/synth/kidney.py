"""Kidneys: bean-shaped parenchyma with cortex, pyramids, sinus fat and collecting system, simple
cysts, renal vessels and ureters. Tumors live in ``tumor.py``.

A kidney is built in its own frame: u along the long axis (toward the feet), v front-to-back, w
toward the lateral border. The hilum (sinus opening) faces -w, i.e. medially and forward once the
frame is rotated into the body.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from nephroseg.synth.intensity import Tissue, tissue_set
from nephroseg.synth.shapes import (
    Box,
    Capsule,
    Grid,
    Vec,
    ellipsoid_depth,
    ellipsoid_level,
    frame,
    half_extent,
    local_coords,
    put,
)

# What a kidney may push aside (fat, soft organs, psoas) — never bone, vessels or the wall.
KIDNEY_ROOM = tissue_set(
    Tissue.VISCERAL_FAT,
    Tissue.PERIRENAL_FAT,
    Tissue.LIVER,
    Tissue.SPLEEN,
    Tissue.PANCREAS,
    Tissue.BOWEL_WALL,
    Tissue.BOWEL_FLUID,
    Tissue.FECES,
    Tissue.GAS,
    Tissue.MUSCLE,
    Tissue.LUNG,
    Tissue.RENAL_VEIN,
    Tissue.ARTERY,
)
PERIRENAL_ROOM = tissue_set(
    Tissue.VISCERAL_FAT,
    Tissue.LIVER,
    Tissue.SPLEEN,
    Tissue.PANCREAS,
    Tissue.BOWEL_WALL,
    Tissue.BOWEL_FLUID,
    Tissue.FECES,
    Tissue.GAS,
    Tissue.LUNG,
)
CYST_ROOM = tissue_set(Tissue.CORTEX, Tissue.MEDULLA, Tissue.PERIRENAL_FAT, Tissue.VISCERAL_FAT)


@dataclass(frozen=True)
class Kidney:
    side: int  # +1 patient left (high column index), -1 right
    center: Vec  # (z, y, x) mm
    radii: Vec  # half length (u), half thickness (v), half width (w)
    axes: np.ndarray  # rows u, v, w in world (z, y, x)
    bend: float  # bean curvature: poles curve medially by bend·width
    cortex: float  # cortical thickness (mm)
    sinus: float  # sinus size as a fraction of the kidney
    hilum_half: float  # half the hilum's opening along the long axis, as a fraction of the half length
    pyramids: np.ndarray  # (K, 3) cone axes in scaled local coordinates
    pyramid_cos: np.ndarray  # (K,) cosine of each cone's half angle
    perirenal: float  # fat shell thickness (mm)

    def to_world(self, local: np.ndarray) -> np.ndarray:
        return np.asarray(self.center) + np.asarray(local) @ self.axes

    def local(self, grid: Grid, box: Box) -> list[np.ndarray]:
        """Local coordinates with the bean bend folded out."""
        u, v, w = local_coords(grid, box, self.center, self.axes)
        a, _, c = self.radii
        return [u, v, w + np.float32(self.bend * c) * (u / np.float32(a)) ** 2]

    def surface_point(self, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World point and outward normal on the surface in the (scaled) local direction."""
        d = direction / np.linalg.norm(direction)
        a, b, c = self.radii
        local = np.array([a * d[0], b * d[1], c * d[2] - self.bend * c * d[0] ** 2])
        normal = np.array([d[0] / a, d[1] / b, d[2] / c])
        normal = normal / np.linalg.norm(normal) @ self.axes
        return self.to_world(local), normal

    def hilum(self) -> np.ndarray:
        return self.to_world(np.array([0.0, 0.0, -0.95 * self.radii[2]]))

    def box(self, grid: Grid, margin: float = 0.0) -> Box | None:
        return grid.box(self.center, half_extent(np.asarray(self.radii) * 1.05 + margin, self.axes) + 2)

    def paint_fat(self, tissue: np.ndarray, grid: Grid) -> None:
        """Perirenal fat (inside Gerota's fascia): keeps liver, spleen and bowel off the kidney."""
        box = self.box(grid, self.perirenal)
        if box is not None:
            level = ellipsoid_level(self.local(grid, box), np.asarray(self.radii) + self.perirenal)
            put(tissue, box, level < 1.0, Tissue.PERIRENAL_FAT, PERIRENAL_ROOM)

    def paint(self, tissue: np.ndarray, grid: Grid) -> None:
        box = self.box(grid)
        if box is None:
            return
        loc = self.local(grid, box)
        a, b, c = self.radii
        inside = ellipsoid_level(loc, self.radii) < 1.0
        s = self.sinus
        # The sinus is a cavity inside the parenchyma that opens medially only at the hilum: above
        # and below it an axial slice shows fat enclosed by a ring of kidney, at it a notch.
        sinus_c = (0.0, 0.0, -0.35 * c)
        cavity = ellipsoid_level(_shift(loc, sinus_c), (s * a, s * b, 0.36 * c)) < 1.0
        hilum = ((loc[0] / (self.hilum_half * a)) ** 2 + (loc[1] / (0.6 * s * b)) ** 2 < 1.0) & (
            loc[2] < sinus_c[2]
        )
        in_sinus = inside & (cavity | hilum)
        parenchyma = inside & ~in_sinus
        cls = np.zeros(inside.shape, dtype=np.uint8)
        cls[parenchyma] = Tissue.CORTEX
        deep = parenchyma & (ellipsoid_depth(loc, self.radii) > self.cortex)
        # Pyramids: cones whose apex (papilla) points into the sinus.
        q = [loc[0][deep] / a, loc[1][deep] / b, loc[2][deep] / c - np.float32(sinus_c[2] / c)]
        norm = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2) + np.float32(1e-6)
        medulla = np.zeros(norm.shape, dtype=bool)
        for axis, cos_half in zip(self.pyramids, self.pyramid_cos, strict=True):
            medulla |= (q[0] * axis[0] + q[1] * axis[1] + q[2] * axis[2]) > cos_half * norm
        values = cls[deep]
        values[medulla] = Tissue.MEDULLA
        cls[deep] = values
        # Sinus: fat around the pelvis and its calyces (urine).
        pelvis_c = (0.0, 0.0, -0.7 * c)
        pelvis = ellipsoid_level(_shift(loc, pelvis_c), (0.3 * a, 0.45 * b, 0.35 * c)) < 1.0
        cls[in_sinus] = Tissue.PERIRENAL_FAT
        cls[in_sinus & pelvis] = Tissue.URINE
        for axis in self.pyramids[:: max(len(self.pyramids) // 5, 1)]:
            tip = np.array(sinus_c) + 0.45 * np.array([axis[0] * a, axis[1] * b, axis[2] * c])
            dist = _segment_local(loc, np.array(pelvis_c), tip)
            cls[in_sinus & (dist < 2.5)] = Tissue.URINE
        cls[pelvis & ~inside & (loc[2] < 0)] = Tissue.URETER  # extrarenal pelvis: not kidney
        put(tissue, box, cls > 0, cls, KIDNEY_ROOM)


def _shift(loc: list[np.ndarray], center: Vec) -> list[np.ndarray]:
    return [loc[i] - np.float32(center[i]) for i in range(3)]


def _segment_local(loc: list[np.ndarray], p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    axis = (p1 - p0).astype(np.float32)
    d = [loc[i] - np.float32(p0[i]) for i in range(3)]
    t = np.clip(sum(d[i] * axis[i] for i in range(3)) / np.float32(max(axis @ axis, 1e-6)), 0, 1)
    return np.sqrt(sum((d[i] - t * axis[i]) ** 2 for i in range(3)))


def plan_kidney(rng: np.random.Generator, side: int, center: Vec, perirenal: float) -> Kidney:
    """A kidney 10.5–13 cm long, tilted like the real ones: upper pole medial and posterior,
    hilum turned forward by 25–50° in the axial plane. Size and sinus depth follow the KiTS19
    masks (bench/kidney_shapes.py: 110 × 64 × 50 mm, about 210 ml, sinus enclosed but at the hilum)."""
    u = rng.uniform
    radii = (u(52, 66), u(22, 32), u(28, 39))
    coronal, sagittal, axial = u(0.1, 0.3), u(0.1, 0.3), u(0.45, 0.85)
    # Long axis toward the feet, drifting lateral and forward going down.
    long_axis = np.array([1.0, -np.sin(sagittal), side * np.sin(coronal)])
    lateral = np.array([0.0, np.sin(axial), side * np.cos(axial)])  # lateral border turned backward
    count = int(rng.integers(8, 13))
    angles = np.linspace(-1.25, 1.25, count) + rng.normal(0, 0.08, count)
    rows = np.where(np.arange(count) % 2 == 0, 1.0, -1.0) * u(0.25, 0.6, count)
    pyramids = np.stack([np.sin(angles), rows, np.cos(angles)], axis=1)
    pyramids /= np.linalg.norm(pyramids, axis=1, keepdims=True)
    return Kidney(
        side=side,
        center=center,
        radii=radii,
        axes=frame(long_axis, lateral),
        bend=u(0.15, 0.3),
        cortex=u(4, 7),
        sinus=u(0.28, 0.42),
        hilum_half=u(0.2, 0.32),
        pyramids=pyramids,
        pyramid_cos=np.cos(u(0.18, 0.3, count)),
        perirenal=perirenal,
    )


def plan_cysts(rng: np.random.Generator, kidney: Kidney) -> list[Cyst]:
    out = []
    for _ in range(int(rng.integers(1, 4))):
        direction = rng.normal(size=3)
        direction[2] = abs(direction[2])  # not in the hilum
        point, normal = kidney.surface_point(direction)
        radius = float(rng.choice([rng.uniform(4, 10), rng.uniform(10, 25)], p=[0.7, 0.3]))
        out.append(Cyst(tuple(point + normal * radius * rng.uniform(-0.6, 0.4)), radius))
    return out


@dataclass(frozen=True)
class Cyst:
    """Simple (Bosniak I) cyst: water density, labelled kidney as KiTS19 does."""

    center: Vec
    radius: float

    def paint(self, tissue: np.ndarray, grid: Grid) -> None:
        box = grid.box(self.center, (self.radius,) * 3)
        if box is None:
            return
        z, y, x = grid.coords(box)
        c = self.center
        inside = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < self.radius**2
        put(tissue, box, inside, Tissue.CYST, CYST_ROOM)


VESSEL_ROOM = tissue_set(
    Tissue.VISCERAL_FAT,
    Tissue.PERIRENAL_FAT,
    Tissue.PANCREAS,
    Tissue.BOWEL_WALL,
    Tissue.BOWEL_FLUID,
    Tissue.FECES,
    Tissue.LIVER,
)


def renal_vessels(
    hilum: np.ndarray, side: int, aorta: tuple[float, float, float], ivc: tuple[float, float, float, float]
) -> list[Capsule]:
    """Renal artery from the aorta (behind the IVC on the right) and renal vein to the IVC (in front
    of the aorta on the left), both entering the hilum."""
    y_ao, x_ao, r_ao = aorta
    y_ivc, x_ivc, ry_ivc, _ = ivc
    z = float(hilum[0])
    hilum_t = tuple(float(v) for v in hilum)
    vein_r, artery_r = (4.5 if side > 0 else 4.0), 2.8
    artery_end = (z - 4.0, float(hilum[1]) + 3.0, float(hilum[2]))
    if side > 0:
        front = (z - 5.0, y_ao - r_ao - vein_r - 2.0, x_ao)
        path_v = [hilum_t, front, (z - 5.0, y_ivc, x_ivc)]
        path_a = [(z - 12.0, y_ao, x_ao), artery_end]
    else:
        path_v = [hilum_t, (z - 3.0, y_ivc, x_ivc)]
        path_a = [(z - 12.0, y_ao, x_ao), (z - 12.0, y_ivc + ry_ivc + artery_r + 1.0, x_ivc), artery_end]
    out = [Capsule(Tissue.RENAL_VEIN, a, b, vein_r, VESSEL_ROOM) for a, b in itertools.pairwise(path_v)]
    out += [Capsule(Tissue.ARTERY, a, b, artery_r, VESSEL_ROOM) for a, b in itertools.pairwise(path_a)]
    return out


def ureter(start: np.ndarray, side: int, spine_rx: float, z_end: float) -> list[Capsule]:
    """The ureter leaves the pelvis and runs down on the front of the psoas."""
    start_t = tuple(float(v) for v in start)
    mid = (start_t[0] + 60.0, start_t[1] - 5.0, side * (spine_rx + 12.0))
    end = (max(z_end, mid[0] + 10.0), start_t[1] - 8.0, side * (spine_rx + 8.0))
    room = tissue_set(Tissue.VISCERAL_FAT, Tissue.PERIRENAL_FAT, Tissue.MUSCLE)
    return [Capsule(Tissue.URETER, start_t, mid, 2.5, room), Capsule(Tissue.URETER, mid, end, 2.5, room)]


@dataclass(frozen=True)
class PerirenalFat:
    """Painting step for a kidney's fat shell (painted before any kidney so neighbours keep theirs)."""

    kidney: Kidney

    def paint(self, tissue: np.ndarray, grid: Grid) -> None:
        self.kidney.paint_fat(tissue, grid)
