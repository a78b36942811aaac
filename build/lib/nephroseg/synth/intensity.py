"""Tissue classes, their CT numbers per contrast phase, and image formation (blur, noise, int16).

A phantom is first painted as a map of tissue classes (uint8); a per-case lookup table then turns
classes into HU, textures are added, and the scanner is imitated: slice-profile and in-plane blur
(partial volume), spatially correlated noise, mild cupping, the reconstruction circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy import ndimage as ndi

from nephroseg.synth.config import MAX_TUMORS

HU_MIN, HU_MAX = -1024, 3071  # what int16 CT stores; the KiTS19 images use the same clip
BOX_SD = 0.29  # SD of a uniform box one voxel wide: what averaging over a voxel's footprint blurs


class Tissue(IntEnum):
    AIR = 0
    GAS = 1  # bowel and stomach gas
    LUNG = 2
    SUBCUT_FAT = 3
    VISCERAL_FAT = 4
    PERIRENAL_FAT = 5  # includes renal sinus fat: not kidney in KiTS19
    SKIN = 6
    MUSCLE = 7
    LIVER = 8
    SPLEEN = 9
    PANCREAS = 10
    BOWEL_WALL = 11
    BOWEL_FLUID = 12
    FECES = 13
    BILE = 14
    ARTERY = 15
    VEIN = 16  # IVC, portal and mesenteric veins
    RENAL_VEIN = 17  # fills early: bright already in the arterial phase
    CSF = 18
    DISC = 19
    CORTICAL_BONE = 20
    TRABECULAR_BONE = 21
    CARTILAGE = 22
    URETER = 23  # urine outside the kidney
    TABLE = 24
    TABLE_FOAM = 25
    EPIDURAL_FAT = 26
    # Kidney label (1)
    CORTEX = 30
    MEDULLA = 31
    URINE = 32  # collecting system inside the kidney outline
    CYST = 33
    # Tumor label (2): one class per tumor so that each gets its own enhancement
    NECROSIS = 39
    TUMOR_FAT = 40  # angiomyolipoma fat
    TUMOR = 41  # TUMOR + i for tumor i < MAX_TUMORS + 2 (mask components share the last one)


TUMOR_CLASSES = tuple(range(Tissue.TUMOR, Tissue.TUMOR + MAX_TUMORS + 2))
KIDNEY_CLASSES = (Tissue.CORTEX, Tissue.MEDULLA, Tissue.URINE, Tissue.CYST)
TUMOR_LABEL_CLASSES = (Tissue.NECROSIS, Tissue.TUMOR_FAT, *TUMOR_CLASSES)

LABEL_OF_TISSUE = np.zeros(256, dtype=np.uint8)
LABEL_OF_TISSUE[list(KIDNEY_CLASSES)] = 1
LABEL_OF_TISSUE[list(TUMOR_LABEL_CLASSES)] = 2

PHASES = ("corticomedullary", "nephrographic", "excretory")


def tissue_set(*classes: int) -> np.ndarray:
    """A 256-entry boolean table: ``table[tissue]`` tests membership at array speed."""
    table = np.zeros(256, dtype=bool)
    table[list(classes)] = True
    return table


@dataclass(frozen=True)
class Appearance:
    """Per-case CT appearance: HU of every class, noise level and scanner blur."""

    phase: str
    hu: dict[int, float]
    noise_sd: float
    resolution_mm: float  # scanner point-spread (Gaussian sigma, mm)
    noise_grain_px: float  # in-plane correlation of the noise (Gaussian sigma, pixels)
    cupping_hu: float  # beam-hardening dip at the body centre
    oral_contrast: bool

    def lut(self) -> np.ndarray:
        table = np.full(256, -1000.0, dtype=np.float32)
        for tissue, value in self.hu.items():
            table[int(tissue)] = value
        return table

    @property
    def parenchyma_hu(self) -> float:
        """What a reader compares a mass to: the enhancing kidney, cortex weighted over medulla."""
        return 0.6 * self.hu[Tissue.CORTEX] + 0.4 * self.hu[Tissue.MEDULLA]


def draw_appearance(
    rng: np.random.Generator, noise_range: tuple[float, float], bmi: float, age: int
) -> Appearance:
    """HU values for one scan. Enhancement depends on the phase; ranges follow the module table."""
    phase = str(rng.choice(PHASES, p=[0.45, 0.45, 0.10]))
    u = rng.uniform
    fat = u(-115, -95)
    cortex = {"corticomedullary": u(160, 250), "nephrographic": u(140, 200), "excretory": u(140, 180)}[phase]
    if phase == "corticomedullary":
        medulla = u(70, min(130.0, cortex - 40))
    elif phase == "nephrographic":
        medulla = cortex - u(0, 15)
    else:
        medulla = cortex + u(-10, 20)
    arterial = phase == "corticomedullary"
    oral_contrast = bool(rng.random() < 0.2)
    hu = {
        Tissue.AIR: -1000.0,
        Tissue.GAS: u(-990, -940),
        Tissue.LUNG: u(-880, -820),
        Tissue.SUBCUT_FAT: fat,
        Tissue.VISCERAL_FAT: min(fat + u(0, 15), -80.0),
        Tissue.PERIRENAL_FAT: u(-110, -85),
        Tissue.EPIDURAL_FAT: u(-110, -80),
        Tissue.SKIN: u(20, 60),
        Tissue.MUSCLE: u(40, 65),
        Tissue.LIVER: u(80, 100) if arterial else u(100, 130),
        Tissue.SPLEEN: u(105, 140) if arterial else u(95, 130),
        Tissue.PANCREAS: u(100, 140) if arterial else u(80, 110),
        Tissue.BOWEL_WALL: u(70, 120),
        Tissue.BOWEL_FLUID: u(150, 350) if oral_contrast else u(0, 30),
        Tissue.FECES: u(-80, 20),
        Tissue.BILE: u(0, 20),
        Tissue.ARTERY: u(200, 300) if arterial else u(130, 190),
        Tissue.VEIN: u(70, 130) if arterial else u(130, 180),
        Tissue.RENAL_VEIN: u(140, 220) if arterial else u(130, 180),
        Tissue.CSF: u(0, 15),
        Tissue.DISC: u(70, 110),
        # Older bone is less dense: the top of each range comes down with age.
        Tissue.CORTICAL_BONE: u(600, max(1200 - 8.0 * max(age - 50, 0), 700)),
        Tissue.TRABECULAR_BONE: u(150, max(300 - 3.0 * max(age - 50, 0), 180)),
        Tissue.CARTILAGE: u(90, 180),
        Tissue.TABLE: u(150, 350),
        Tissue.TABLE_FOAM: u(-900, -800),
        Tissue.CORTEX: cortex,
        Tissue.MEDULLA: medulla,
        Tissue.URINE: u(400, 900) if phase == "excretory" else u(0, 30),
        Tissue.CYST: u(0, 20),
        Tissue.NECROSIS: u(5, 35),
        Tissue.TUMOR_FAT: u(-90, -40),
    }
    hu[Tissue.URETER] = hu[Tissue.URINE]
    for tumor_class in TUMOR_CLASSES:
        hu[tumor_class] = 0.8 * medulla  # overwritten by each painted tumor's own enhancement
    # Larger patients attenuate more and are noisier: tie the draw to BMI.
    lo, hi = noise_range
    rank = float(np.clip((bmi - 18.0) / 30.0 + rng.normal(0.0, 0.15), 0.0, 1.0))
    return Appearance(
        phase=phase,
        hu={int(k): float(v) for k, v in hu.items()},
        noise_sd=lo + (hi - lo) * rank,
        resolution_mm=u(0.35, 0.5),
        noise_grain_px=u(0.6, 1.1),
        cupping_hu=u(0.0, 12.0),
        oral_contrast=oral_contrast,
    )


# Extra noise where real tissue is grainy: trabecular bone, stool, lung.
NOISE_GAIN = np.ones(256, dtype=np.float32)
NOISE_GAIN[[Tissue.TRABECULAR_BONE, Tissue.FECES]] = [4.0, 1.5]
NOISE_GAIN[Tissue.LUNG] = 2.0


def gaussian_kernel_power(sigma: float, truncate: float = 4.0) -> float:
    """Sum of squared weights of scipy's 1-D Gaussian: the variance left after filtering unit white noise."""
    if sigma <= 0:
        return 1.0
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=float)
    weights = np.exp(-0.5 * (x / sigma) ** 2)
    weights /= weights.sum()
    return float((weights**2).sum())


def form_image(
    hu: np.ndarray,
    tissue: np.ndarray,
    spacing: tuple[float, float, float],
    appearance: Appearance,
    rng: np.random.Generator,
    *,
    slice_profile: bool,
    fov_circle: bool,
    body_center_px: tuple[float, float],
    body_radius_px: float,
    slab: int = 32,
) -> np.ndarray:
    """Turn an ideal HU volume (float32, modified in place) into a scanner-like int16 image.

    ``slice_profile`` adds the z-blur of a slice's own thickness; leave it off when the volume was
    already rendered at sub-slice resolution and averaged. ``fov_circle`` sets the corners outside
    the reconstruction circle to -1024, as scanners do.
    """
    sz, sy, _ = spacing
    # Each pixel averages its own footprint (a box: SD 0.29 px) seen through the scanner's blur:
    # 0.6–0.8 px at 512² (0.7 mm pixels), about 0.3 px for coarse grids.
    sigma_xy = float(np.hypot(BOX_SD, appearance.resolution_mm / sy))
    profile_mm = BOX_SD * sz if slice_profile else 0.0
    sigma_z = float(np.hypot(appearance.resolution_mm, profile_mm) / sz)
    ndi.gaussian_filter(hu, (sigma_z, sigma_xy, sigma_xy), output=hu, truncate=3.0)

    ny, nx = hu.shape[1:]
    yy, xx = np.ogrid[:ny, :nx]
    r2 = ((yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2).astype(np.float32)
    outside_fov = (r2 > (min(ny, nx) / 2) ** 2) if fov_circle else np.zeros((ny, nx), dtype=bool)
    body_r2 = ((yy - body_center_px[0]) ** 2 + (xx - body_center_px[1]) ** 2) / max(body_radius_px, 1.0) ** 2
    cupping = (-appearance.cupping_hu * np.clip(1.0 - body_r2, 0.0, 1.0)).astype(np.float32)
    grain = appearance.noise_grain_px
    scale = np.float32(appearance.noise_sd / gaussian_kernel_power(grain))  # 2-D: (Σw²)² → SD Σw²
    out = np.empty(hu.shape, dtype=np.int16)
    for start in range(0, hu.shape[0], slab):
        part = hu[start : start + slab]
        noise = rng.standard_normal(part.shape, dtype=np.float32)
        ndi.gaussian_filter(noise, (0.0, grain, grain), output=noise, truncate=4.0)
        noise *= scale
        noise *= NOISE_GAIN[tissue[start : start + slab]]
        part += noise
        part += np.where(part > -500, cupping, np.float32(0.0))
        part[:, outside_fov] = HU_MIN
        np.clip(part, HU_MIN, HU_MAX, out=part)
        out[start : start + slab] = np.rint(part)
    return out
