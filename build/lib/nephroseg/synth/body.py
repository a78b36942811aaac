"""The body wall, ribs, table and spine: structures with their own geometry, not plain blobs.

All of them paint a tissue map in the anatomical frame of ``anatomy.py`` (x = 0 at the midline,
y = 0 at the centre of the vertebral body, z = 0 at the level of the renal hila).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nephroseg.synth.intensity import Tissue, tissue_set
from nephroseg.synth.shapes import Grid, put, superellipse_radius

SOFT = tissue_set(Tissue.VISCERAL_FAT, Tissue.MUSCLE)
SLAB = 24  # slices per chunk when painting whole-volume layers (bounds memory at 512²×800)


@dataclass(frozen=True)
class Rib:
    z_back: float  # z where the rib leaves the spine region (posterior)
    reach: float  # how far round the body it runs, radians from the posterior midline
    height: float  # craniocaudal size of the rib section (mm)
    width: float  # radial size (mm)


@dataclass(frozen=True)
class Body:
    """Onion layers along rays from the body centre: cavity → muscle → subcutaneous fat → skin.

    The cavity outline is a superellipse (flatter at the back, where the patient lies on the table)
    with a few low harmonics; its size breathes slowly along z. Layer thicknesses vary with angle:
    more fat at the front and flanks, thin linea alba, fat planes between the oblique muscles.
    """

    center: tuple[float, float]  # (y, x) of the cavity centre
    half_width: float
    half_front: float
    half_back: float
    p_front: float
    p_back: float
    harmonics: tuple[tuple[int, float, float], ...]  # (order, relative amplitude, phase)
    z_ref: float
    z_slope: float  # relative size change per 100 mm toward the feet
    muscle: tuple[float, float, float]  # front, side, back thickness (mm)
    fat: tuple[float, float, float]
    fat_slope: float  # relative subcutaneous fat change per 100 mm toward the feet
    skin: float
    ribs: tuple[Rib, ...]
    rib_slope: float  # mm the ribs descend per radian away from the spine
    table_gap: float | None  # gap between the back and the CT table (mm); None: no table

    def _polar(self, grid: Grid) -> tuple[np.ndarray, ...]:
        y = grid.axis(1)[:, None] - np.float32(self.center[0])
        x = grid.axis(2)[None, :] - np.float32(self.center[1])
        theta = np.arctan2(y, x)
        r = np.hypot(y, x).astype(np.float32)
        radius = superellipse_radius(
            theta, self.half_width, self.half_front, self.half_back, self.p_front, self.p_back
        )
        for order, amp, phase in self.harmonics:
            radius = radius * (1.0 + amp * np.cos(order * theta + phase))
        c2, s = np.cos(theta) ** 2, np.sin(theta)
        front = s < 0
        s2 = s**2

        def by_angle(values: tuple[float, float, float]) -> np.ndarray:
            return (np.where(front, values[0], values[2]) * s2 + values[1] * c2).astype(np.float32)

        muscle = by_angle(self.muscle)
        fat = by_angle(self.fat)
        linea = (0.8 * np.exp(-((x / 5.0) ** 2)) * front) * muscle  # the recti part at the midline:
        muscle, fat = muscle - linea, fat + linea  # fat fills in, so the skin stays smooth
        lateral = np.abs(np.cos(theta)) > 0.6  # external/internal oblique and transversus
        back = np.abs(np.mod(theta - np.pi / 2 + np.pi, 2 * np.pi) - np.pi)  # 0 at the spine
        return r, radius.astype(np.float32), muscle, fat, lateral, back.astype(np.float32), x

    def paint(self, tissue: np.ndarray, grid: Grid) -> None:
        r, radius, muscle, fat, lateral, back, x = self._polar(grid)
        zs = grid.axis(0)
        for start in range(0, grid.shape[0], SLAB):
            z = zs[start : start + SLAB][:, None, None]
            scale = 1.0 + self.z_slope * (z - self.z_ref) / 100.0
            inner = scale * radius
            depth = r - inner  # < 0 inside the cavity
            out = tissue[start : start + SLAB]
            fat_here = fat * np.clip(1.0 + self.fat_slope * (z - self.z_ref) / 100.0, 0.5, 1.6)
            outer_muscle = muscle
            outer_fat = outer_muscle + fat_here
            out[depth < outer_fat + self.skin] = Tissue.SKIN
            out[depth < outer_fat] = Tissue.SUBCUT_FAT
            out[depth < outer_muscle] = Tissue.MUSCLE
            plane = lateral & (np.abs(depth - 0.45 * outer_muscle) < 0.8)  # between the obliques
            out[plane] = Tissue.VISCERAL_FAT
            out[depth < 0] = Tissue.VISCERAL_FAT
            self._paint_ribs(out, z, depth, outer_muscle, back)
        if self.table_gap is not None:  # painted last, into the air only: the patient lies on it
            self._paint_table(tissue, grid, x, self._back_extent(zs) + self.table_gap)

    def _paint_ribs(
        self, out: np.ndarray, z: np.ndarray, depth: np.ndarray, muscle: np.ndarray, back: np.ndarray
    ) -> None:
        """Ribs sit in the wall, descending as they run forward; costal cartilage at the front."""
        z_lo, z_hi = float(z.min()), float(z.max())
        dr = None
        for rib in self.ribs:
            first = rib.z_back + self.rib_slope * 0.55 - rib.height
            last = rib.z_back + self.rib_slope * rib.reach + rib.height
            if last < z_lo or first > z_hi:
                continue
            if dr is None:
                dr = np.abs(depth - 0.35 * muscle)
            along = (back > 0.55) & (back < rib.reach)  # clear of the paraspinal muscles
            dz = np.abs(z - (rib.z_back + self.rib_slope * back))
            inside = along & (dz < rib.height / 2) & (dr < rib.width / 2)
            if not inside.any():
                continue
            edge = (dz > rib.height / 2 - 1.0) | (dr > rib.width / 2 - 1.0)
            cartilage = np.broadcast_to(back > 0.72 * np.pi, inside.shape)
            out[inside & cartilage] = Tissue.CARTILAGE
            out[inside & ~cartilage & edge] = Tissue.CORTICAL_BONE
            out[inside & ~cartilage & ~edge] = Tissue.TRABECULAR_BONE

    def _back_extent(self, zs: np.ndarray) -> float:
        """Typical y of the skin at the midline over the scan (where the patient rests on the table)."""
        theta = np.pi / 2
        radius = float(
            superellipse_radius(
                np.array(theta), self.half_width, self.half_front, self.half_back, self.p_front, self.p_back
            )
        )
        for order, amp, phase in self.harmonics:
            radius *= 1.0 + amp * np.cos(order * theta + phase)
        rel = (zs - self.z_ref) / 100.0
        scale = 1.0 + self.z_slope * rel
        fat = self.fat[2] * np.clip(1.0 + self.fat_slope * rel, 0.5, 1.6)
        return float(self.center[0] + np.median(scale * radius + self.muscle[2] + fat + self.skin))

    def _paint_table(self, tissue: np.ndarray, grid: Grid, x: np.ndarray, table_y: float) -> None:
        """A curved carbon-fibre tabletop with a foam core, under the patient's back."""
        y = grid.axis(1)[:, None]
        top = table_y - 0.0006 * x**2  # curves up at the sides
        depth = y - top
        width = np.abs(x) < 0.42 * grid.shape[2] * grid.spacing[2]
        skin = max(2.5, grid.spacing[1])  # at least a pixel, or a coarse grid samples it into dashes
        foam = (depth >= 0) & (depth < 9 + 2 * skin) & width
        shell = foam & ((depth < skin) | (depth >= 9 + skin))
        cls = np.where(shell, Tissue.TABLE, Tissue.TABLE_FOAM).astype(np.uint8)
        for start in range(0, grid.shape[0], SLAB):
            out = tissue[start : start + SLAB]
            put(out, (slice(None),) * 3, foam & (out == Tissue.AIR), cls)


@dataclass(frozen=True)
class Spine:
    """Vertebral bodies with discs, canal and posterior elements, repeating every ``period`` mm."""

    body_rx: float
    body_ry: float
    canal_r: float
    period: float
    disc: float  # disc height (mm)
    phase: float  # z of a vertebra's upper endplate
    spinous: float  # length of the spinous process (mm)
    transverse: float  # reach of the transverse processes from the midline (mm)
    growth: float  # relative growth of the vertebral body per 100 mm toward the feet
    z_ref: float
    cortex: float = 1.5

    @property
    def canal_y(self) -> float:
        return self.body_ry + 0.85 * self.canal_r + 1.0

    def paint(self, tissue: np.ndarray, grid: Grid) -> None:
        reach = max(self.transverse, self.body_rx * 1.3) + 2
        y0, y1 = -self.body_ry * 1.3 - 2, self.canal_y + self.canal_r + 6 + self.spinous
        box = grid.box(
            (grid.origin[0] + grid.shape[0] * grid.spacing[0] / 2, (y0 + y1) / 2, 0.0),
            (grid.shape[0] * grid.spacing[0], (y1 - y0) / 2, reach),
        )
        if box is None:
            return
        z, y, x = np.broadcast_arrays(*grid.coords(box))
        cls = np.zeros(z.shape, dtype=np.uint8)
        phase = np.mod(z - self.phase, self.period)
        frac = phase / self.period
        body_h = self.period - self.disc
        grow = 1.0 + self.growth * (z - self.z_ref) / 100.0
        rx, ry = self.body_rx * grow, self.body_ry * grow

        # Vertebral body: an ellipse with a posterior notch for the canal; endplates are cortical.
        g = np.sqrt((x / rx) ** 2 + (y / ry) ** 2)
        depth = (1.0 - g) * np.minimum(rx, ry)
        cy, cr = self.canal_y, self.canal_r
        rho = np.sqrt(x**2 + (y - cy) ** 2)
        vb = (g < 1.0) & (rho > cr + 1.5)
        in_body = phase < body_h
        endplate = (phase < self.cortex) | (phase > body_h - self.cortex)
        cortical = (depth < self.cortex) | endplate | (rho < cr + 1.5 + self.cortex)
        cls[vb & in_body & cortical] = Tissue.CORTICAL_BONE
        cls[vb & in_body & ~cortical] = Tissue.TRABECULAR_BONE
        cls[vb & ~in_body] = Tissue.DISC

        # Posterior elements: pedicles and lamina round the canal, spinous and transverse processes.
        ring_t = 6.0
        arch = (frac > 0.05) & (frac < 0.65)
        ring = (rho >= cr) & (rho < cr + ring_t) & (y > cy - 0.3 * cr) & arch
        ring_core = ring & (rho > cr + 1.2) & (rho < cr + ring_t - 1.2)
        sp_y0 = cy + cr + ring_t * 0.5
        spinous = (np.abs(x) < 3.5) & (y > sp_y0) & (y < sp_y0 + self.spinous) & (frac > 0.15) & (frac < 0.75)
        spinous_core = spinous & (np.abs(x) < 2.0)
        tp_band = np.abs(y - (cy - 1.0)) < 3.5
        tproc = tp_band & (np.abs(x) > cr) & (np.abs(x) < self.transverse) & (frac > 0.3) & (frac < 0.48)
        tproc_core = tproc & (np.abs(y - (cy - 1.0)) < 2.0)
        bone = ring | spinous | tproc
        core = ring_core | spinous_core | tproc_core
        cls[bone & ~core] = Tissue.CORTICAL_BONE
        cls[core] = Tissue.TRABECULAR_BONE

        # Canal: thecal sac (CSF) in epidural fat.
        cls[rho < cr] = Tissue.EPIDURAL_FAT
        cls[rho < 0.75 * cr] = Tissue.CSF
        put(tissue, box, cls > 0, cls, SOFT)
