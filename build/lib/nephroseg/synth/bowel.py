"""Bowel: the colon frame round the edge of the abdomen and small-bowel loops packed in the middle.

Loops are tubes with an enhancing wall and fluid, collapsed or gas-containing lumens; the colon holds
bubbly stool with a gas level. Small bowel is laid out as walks over a jittered lattice, so loops
fill the space between the organs the way they do in a real abdomen instead of leaving empty fat.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import ndtri

from nephroseg.synth.intensity import Tissue, tissue_set
from nephroseg.synth.shapes import Grid, capsule_box, put, segment_distance, smooth_field

if TYPE_CHECKING:
    from nephroseg.synth.organs import Landmarks

LUMEN_ROOM = tissue_set(Tissue.BOWEL_WALL)
NEIGHBOURS = np.array([(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)])


@dataclass(frozen=True)
class BowelLoop:
    """A chain of tube segments: wall first for every segment, then the lumen, so touching segments
    share one lumen. Gas rises to the front (small y); stool carries gas bubbles."""

    points: tuple[tuple[float, float, float], ...]
    radius: float
    wall: float  # equal to the radius for a collapsed loop
    content: int  # Tissue.BOWEL_FLUID or Tissue.FECES
    gas: float  # fraction of the lumen diameter above the gas level (0 = none)
    allowed: np.ndarray
    bubbles: float = 0.0  # fraction of stool that is gas
    seed: int = 0

    def paint(self, tissue: np.ndarray, grid: Grid) -> None:
        segments = list(itertools.pairwise(self.points))
        for p0, p1 in segments:
            box = capsule_box(grid, p0, p1, self.radius)
            if box is not None:
                dist, _ = segment_distance(grid, box, p0, p1)
                put(tissue, box, dist < self.radius, Tissue.BOWEL_WALL, self.allowed)
        lumen_r = self.radius - self.wall
        if lumen_r <= 0.5:
            return
        rng = np.random.default_rng(self.seed)
        for p0, p1 in segments:
            box = capsule_box(grid, p0, p1, lumen_r)
            if box is None:
                continue
            dist, offset = segment_distance(grid, box, p0, p1)
            inside = dist < lumen_r
            value = np.full(inside.shape, self.content, dtype=np.uint8)
            if self.bubbles > 0:
                field = smooth_field(rng, inside.shape, tuple(3.0 / s for s in grid.spacing))
                value[field > ndtri(1.0 - self.bubbles)] = Tissue.GAS
            if self.gas > 0:
                level = lumen_r * (1.0 - 2.0 * self.gas)
                value[np.broadcast_to(offset[1] < -level, inside.shape)] = Tissue.GAS
            put(tissue, box, inside, value, LUMEN_ROOM)


def plan_colon(rng: np.random.Generator, m: Landmarks) -> list[BowelLoop]:
    """Ascending colon (patient right), sagging transverse colon (front), descending colon (left)."""
    u = rng.uniform
    cy, hw, hf, hb, zr, zl, bottom = m.cy, m.hw, m.hf, m.hb, m.zr, m.zl, m.z1 + 20
    allowed = tissue_set(Tissue.VISCERAL_FAT)
    asc_x, desc_x = -hw * u(0.62, 0.75), hw * u(0.62, 0.75)
    sag = u(-10, 40)
    paths = [
        ((zr - 10, cy - 5, asc_x), (0.5 * (zr + bottom), cy + u(-10, 10), asc_x), (bottom, cy, asc_x * 0.95)),
        (
            (zr - 10, cy - 0.4 * hf, asc_x * 0.9),
            (sag * 0.6, cy - 0.65 * hf, asc_x * 0.45),
            (sag, cy - 0.75 * hf, 0.0),
            (sag * 0.6, cy - 0.65 * hf, -asc_x * 0.45),
            (zl - 40, cy - 0.4 * hf, -asc_x),
        ),
        (
            (zl - 40, cy + 0.2 * hb, desc_x),
            (0.5 * (zl + bottom), cy + 0.1 * hb, desc_x),
            (bottom, cy, desc_x),
        ),
    ]
    loops = []
    for i, path in enumerate(paths):
        points = tuple(tuple(float(v) for v in np.add(p, rng.normal(0, 6, 3))) for p in path)
        radius = u(16, 24) if i < 2 else u(12, 18)
        loops.append(
            BowelLoop(
                points,
                radius,
                u(2, 3),
                Tissue.FECES,
                u(0.1, 0.45),
                allowed,
                u(0.1, 0.3),
                int(rng.integers(2**31)),
            )
        )
    return loops


def plan_small_bowel(
    rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, allowed: np.ndarray
) -> list[BowelLoop]:
    """Loops as self-avoiding walks over a jittered lattice filling the box lo–hi (z, y, x; mm)."""
    u = rng.uniform
    step = u(21, 25)
    counts = np.maximum(((hi - lo) / step).astype(int), 1)
    cell = (hi - lo) / counts
    centres = lo + (np.indices(counts).reshape(3, -1).T + 0.5) * cell
    centres = centres + rng.uniform(-0.3, 0.3, centres.shape) * step
    visited = np.zeros(tuple(counts), dtype=bool)
    loops = []
    for flat in rng.permutation(len(centres)):
        start = np.array(np.unravel_index(flat, tuple(counts)))
        if visited[tuple(start)]:
            continue
        chain = [start]
        visited[tuple(start)] = True
        for _ in range(int(rng.integers(2, 9))):
            options = [
                n
                for n in chain[-1] + NEIGHBOURS
                if np.all(n >= 0) and np.all(n < counts) and not visited[tuple(n)]
            ]
            if not options:
                break
            chain.append(options[int(rng.integers(len(options)))])
            visited[tuple(chain[-1])] = True
        points = [centres[np.ravel_multi_index(tuple(c), tuple(counts))] for c in chain]
        if len(points) == 1:
            points.append(points[0] + rng.normal(0, 8, 3))
        radius = u(8.5, 12)
        kind = rng.random()
        wall = radius if kind < 0.3 else u(2, 3)  # collapsed loops look like solid soft tissue
        gas = u(0.2, 0.6) if kind > 0.8 else 0.0
        loops.append(
            BowelLoop(
                tuple(tuple(float(v) for v in p) for p in points),
                radius,
                wall,
                Tissue.BOWEL_FLUID,
                gas,
                allowed,
            )
        )
    return loops
