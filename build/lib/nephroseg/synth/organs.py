"""Upper abdomen and lower chest: liver, gallbladder, spleen, stomach, pancreas, heart and lungs.

Organs are lobulated ellipsoids and tubes placed from the kidneys and the body cavity. The lungs
sit above a domed diaphragm (highest in the middle, lowest at the back), so axial slices near the
dome show lung round the periphery and liver or spleen in the middle, as real scans do.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from nephroseg.synth.bowel import BowelLoop
from nephroseg.synth.intensity import Tissue, tissue_set
from nephroseg.synth.shapes import Capsule, Ellipsoid, Grid, put

FAT = tissue_set(Tissue.VISCERAL_FAT)


@dataclass(frozen=True)
class Landmarks:
    """Where things are (anatomical frame, mm): the cavity, the kidneys, the scan and great vessels."""

    cy: float  # cavity centre (y)
    hw: float  # cavity half width
    hf: float  # cavity half depth to the front
    hb: float  # cavity half depth to the back
    zr: float  # right kidney centre (z)
    zl: float  # left kidney centre (z)
    yl: float  # left kidney centre (y)
    xl: float  # left kidney centre (x)
    z0: float  # first slice
    z1: float  # last slice
    aorta: tuple[float, float, float]  # y, x, radius
    ivc: tuple[float, float, float, float]  # y, x, ry, rx


@dataclass(frozen=True)
class Lung:
    """One lung base: everything in the cavity above the diaphragm on its side of the mediastinum.

    The diaphragm is a paraboloid: ``z < apex_z + curvature·r² + tilt·(y - apex_y)``.
    """

    side: int
    apex: tuple[float, float, float]
    curvature: float
    tilt: float  # the posterior recess reaches lower
    mediastinum: float  # half width kept free at the midline (mm)

    def paint(self, tissue: np.ndarray, grid: Grid) -> None:
        z_top = grid.origin[0]
        z_low = self.apex[0] + 120.0
        if z_low < z_top:
            return
        x_mid = self.side * 250.0
        box = grid.box(((z_top + z_low) / 2, self.apex[1], x_mid), ((z_low - z_top) / 2, 250.0, 250.0))
        if box is None:
            return
        z, y, x = grid.coords(box)
        dome = (
            self.apex[0]
            + self.curvature * ((y - self.apex[1]) ** 2 + (x - self.apex[2]) ** 2)
            + self.tilt * (y - self.apex[1])
        )
        inside = (z < dome) & (self.side * x > self.mediastinum)
        put(tissue, box, inside, Tissue.LUNG, FAT)


def plan_upper_abdomen(rng: np.random.Generator, m: Landmarks) -> tuple[list[object], list[object]]:
    """(thorax, organs): heart and lungs, then liver, spleen, stomach, gallbladder and pancreas."""
    u = rng.uniform
    seed = lambda: int(rng.integers(2**31))  # noqa: E731 - a short local helper reads best here
    y_ao, x_ao, r_ao = m.aorta
    y_ivc, x_ivc, ry_ivc, _ = m.ivc

    liver_c = (m.zr - u(55, 85), m.cy + u(-15, 10), -m.hw * u(0.38, 0.5))
    liver_r = (u(70, 95), (m.hf + m.hb) / 2 * u(0.65, 0.85), m.hw * u(0.5, 0.62))
    spleen_c = (m.zl - u(35, 60), m.cy + m.hb * u(0.25, 0.45), m.hw * u(0.52, 0.65))
    spleen_r = (u(45, 65), u(40, 55), u(16, 26))

    dome_right = liver_c[0] - 0.85 * liver_r[0]
    dome_left = dome_right + u(5, 20)
    heart_c = (dome_left - u(45, 60), m.cy - 0.3 * m.hf, 0.12 * m.hw)
    heart_r = (u(50, 60), 0.3 * (m.hf + m.hb), u(55, 70))
    thorax: list[object] = [
        Ellipsoid(Tissue.MUSCLE, heart_c, heart_r, allowed=FAT),
        Ellipsoid(Tissue.VEIN, heart_c, tuple(r - 10 for r in heart_r), allowed=tissue_set(Tissue.MUSCLE)),
    ]
    for side, dome in ((-1, dome_right), (1, dome_left)):
        apex = (dome, m.cy - 0.1 * m.hf, side * 0.45 * m.hw)
        thorax.append(Lung(side, apex, u(0.003, 0.005), u(0.2, 0.35), u(22, 30)))

    organs: list[object] = [
        Ellipsoid(Tissue.LIVER, liver_c, liver_r, allowed=FAT, wobble=0.06, seed=seed()),
        Ellipsoid(
            Tissue.LIVER,
            (liver_c[0] - u(20, 40), m.cy - m.hf * u(0.45, 0.6), m.hw * u(-0.05, 0.15)),
            (u(40, 60), u(25, 40), u(50, 75)),
            allowed=FAT,
            wobble=0.05,
            seed=seed(),
        ),
    ]
    porta = np.array([liver_c[0] + 0.3 * liver_r[0], m.cy - 0.2 * m.hf, -0.25 * m.hw])
    for _ in range(int(rng.integers(4, 8))):  # portal and hepatic veins
        tip = np.array(liver_c) + np.array(liver_r) * rng.uniform(-0.8, 0.8, 3)
        organs.append(Capsule(Tissue.VEIN, tuple(porta), tuple(tip), u(2.5, 6), tissue_set(Tissue.LIVER)))
    if rng.random() < 0.75:  # the rest had a cholecystectomy
        gb = (liver_c[0] + liver_r[0] * u(0.45, 0.7), m.cy - m.hf * u(0.3, 0.5), -m.hw * u(0.25, 0.4))
        room = tissue_set(Tissue.LIVER, Tissue.VISCERAL_FAT)
        organs.append(Ellipsoid(Tissue.BILE, gb, (u(30, 45), u(12, 18), u(12, 18)), allowed=room))
    c, s = np.cos(u(0.3, 0.8)), np.sin(u(0.3, 0.8))
    turn = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])  # hugs the posterolateral wall
    organs.append(Ellipsoid(Tissue.SPLEEN, spleen_c, spleen_r, turn, FAT, 0.05, seed()))
    if rng.random() < 0.85:
        st = (m.zl - u(50, 90), m.cy - m.hf * u(0.3, 0.5), m.hw * u(0.15, 0.35))
        ends = ((st[0] - 25, st[1], st[2] + 10), (st[0] + 25, st[1] + 5, st[2] - 10))
        organs.append(BowelLoop(ends, u(30, 45), u(3, 5), Tissue.BOWEL_FLUID, u(0.0, 0.5), FAT))
    pancreas = [
        (u(-15, 5), y_ivc - ry_ivc - u(6, 12), x_ivc + 5),  # head beside the duodenum
        (u(-25, -10), y_ao - r_ao - u(18, 25), x_ao - 5),  # neck over the SMA
        (u(-35, -20), y_ao - r_ao - u(14, 20), x_ao + 40),
        (m.zl - u(25, 45), m.yl - u(20, 30), m.xl + u(0, 15)),  # tail toward the splenic hilum
    ]
    radius = u(9, 13)
    organs += [Capsule(Tissue.PANCREAS, a, b, radius, FAT) for a, b in itertools.pairwise(pancreas)]
    return thorax, organs
