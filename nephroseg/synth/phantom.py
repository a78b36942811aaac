"""Procedural KiTS-like cases: plan a patient, paint tissues, form a CT image, derive the labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nephroseg.synth.anatomy import KidneyPlacement, Patient, Trunk, draw_patient, plan_anatomy, plan_trunk
from nephroseg.synth.config import STANDARD_THICKNESSES_MM, SynthConfig
from nephroseg.synth.intensity import LABEL_OF_TISSUE, Appearance, Tissue, draw_appearance, form_image
from nephroseg.synth.kidney import Cyst, Kidney, PerirenalFat, plan_cysts, plan_kidney, renal_vessels, ureter
from nephroseg.synth.shapes import Grid, half_extent
from nephroseg.synth.tumor import BENIGN, SUBTYPE_WEIGHTS, SUBTYPES, Tumor, plan_tumor

SUBSLICE_MM = 1.25  # thick slices are rendered as sub-slices and averaged: a true slice profile


def kits_affine(spacing: tuple[float, float, float]) -> np.ndarray:
    """The affine KiTS19 ships for (slice, row, column) spacing: axis codes I-P-L, origin 0."""
    sz, sy, sx = spacing
    return np.array([[0, 0, -sx, 0], [0, -sy, 0, 0], [-sz, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def seed_sequence(seed: int | np.random.SeedSequence, index: int | None = None) -> np.random.SeedSequence:
    """Case seeds derive from (cohort seed, case index): cases are independent and reproducible alone."""
    if isinstance(seed, np.random.SeedSequence):
        if index is None:
            return seed
        return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, index))
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.SeedSequence(int(seed), spawn_key=() if index is None else (index,))


@dataclass(frozen=True)
class TumorInfo:
    subtype: str
    diameter_mm: float  # as planned (the label's own extent is measured separately)
    growth: str  # endophytic / mixed / exophytic
    mean_hu: float
    iso_dense: bool
    necrosis: bool
    side: str  # "left" / "right"


@dataclass(frozen=True)
class CaseInfo:
    """What was drawn for a case: enough to fill kits.json and to explain an image."""

    patient: Patient
    phase: str
    subtype: str | None
    tumors: tuple[TumorInfo, ...]
    kidneys: tuple[str, ...]  # sides present
    cysts: int
    noise_sd: float
    slice_thickness_mm: float
    hu: dict[str, float] = field(default_factory=dict)

    @property
    def malignant(self) -> bool | None:
        if self.subtype is None:
            return None
        return self.subtype not in BENIGN


@dataclass(eq=False)
class SyntheticCase:
    """One case in canonical (I, P, L) orientation: ``image`` int16 HU, ``label`` uint8 {0, 1, 2},
    ``tissue`` the painted classes (intensity.Tissue) behind both."""

    image: np.ndarray
    label: np.ndarray
    tissue: np.ndarray
    affine: np.ndarray
    info: CaseInfo

    @property
    def spacing(self) -> tuple[float, float, float]:
        sizes = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return (float(sizes[0]), float(sizes[1]), float(sizes[2]))


def draw_thickness(rng: np.random.Generator, limits: tuple[float, float]) -> float:
    """A thickness scanners offer, within the configured range (uniform when none fits)."""
    lo, hi = limits
    options = [t for t in STANDARD_THICKNESSES_MM if lo <= t <= hi]
    return float(rng.choice(options)) if options else float(rng.uniform(lo, hi))


def hu_by_name(appearance: Appearance) -> dict[str, float]:
    names = {int(t): t.name.lower() for t in Tissue if t != Tissue.TUMOR}  # tumors: see CaseInfo.tumors
    return {names[k]: round(v, 1) for k, v in appearance.hu.items() if k in names}


@dataclass
class _Plan:
    patient: Patient
    appearance: Appearance
    thickness: float
    kidneys: list[Kidney]
    tumors: list[Tumor]
    cysts: list[Cyst]
    subtype: str | None
    n_slices: int
    z_first: float


def _plan_kidneys(rng: np.random.Generator, config: SynthConfig, patient: Patient) -> list[Kidney]:
    u = rng.uniform
    perirenal = float(np.clip(u(5, 10) + 0.4 * max(patient.bmi - 22.0, 0.0), 5.0, 22.0))
    z_left = -u(2, 12)
    centres = {+1: (z_left, u(0, 12), u(58, 76)), -1: (z_left + u(5, 25), u(0, 12), -u(58, 76))}
    shift = (centres[1][0] + centres[-1][0]) / 2  # z = 0 at the hila
    kidneys = [plan_kidney(rng, side, (c[0] - shift, c[1], c[2]), perirenal) for side, c in centres.items()]
    if rng.random() < config.single_kidney_probability:
        kidneys.pop(int(rng.integers(2)))
    return kidneys


def _z_span(kidneys: list[Kidney]) -> tuple[float, float]:
    lo = min(k.center[0] - half_extent(k.radii, k.axes)[0] for k in kidneys)
    hi = max(k.center[0] + half_extent(k.radii, k.axes)[0] for k in kidneys)
    return lo, hi


def _plan(rng: np.random.Generator, config: SynthConfig) -> _Plan:
    patient = draw_patient(rng)
    appearance = draw_appearance(rng, config.noise_sd_hu, patient.bmi, patient.age)
    thickness = draw_thickness(rng, config.slice_thickness_mm)
    kidneys = _plan_kidneys(rng, config, patient)

    # Scan length: the configured extent, kidneys placed inside it with random margins.
    lo, hi = _z_span(kidneys)
    n_slices = max(4, round(rng.uniform(*config.z_extent_mm) / thickness))
    spare = n_slices * thickness - (hi - lo)
    top_margin = spare * rng.uniform(0.25, 0.6) if spare > 0 else spare / 2
    z_first = lo - top_margin + thickness / 2
    z_range = (z_first, z_first + (n_slices - 1) * thickness)

    n_tumors = int(rng.integers(config.min_tumors, config.max_tumors + 1))
    subtype = str(rng.choice(SUBTYPES, p=SUBTYPE_WEIGHTS)) if n_tumors else None
    tumors = []
    for index in range(n_tumors):
        kidney = kidneys[int(rng.integers(len(kidneys)))]
        tumors.append(plan_tumor(rng, index, kidney, subtype, appearance.parenchyma_hu, z_range, index == 0))
    cysts = []
    for kidney in kidneys:
        if rng.random() < config.cyst_probability:
            cysts += plan_cysts(rng, kidney)
    return _Plan(patient, appearance, thickness, kidneys, tumors, cysts, subtype, n_slices, z_first)


def _placement(plan: _Plan) -> KidneyPlacement:
    boxes = [(np.asarray(k.center), half_extent(k.radii, k.axes)) for k in plan.kidneys]
    boxes += [(np.asarray(t.center), half_extent(t.radii, t.axes)) for t in plan.tumors]
    lo = np.min([c - h for c, h in boxes], axis=0)
    hi = np.max([c + h for c, h in boxes], axis=0)
    sides = {k.side: k.center for k in plan.kidneys}
    return KidneyPlacement(tuple(lo), tuple(hi), sides.get(-1), sides.get(+1))


def _fit_field_of_view(
    rng: np.random.Generator, config: SynthConfig, trunk: Trunk
) -> tuple[Trunk, float, float]:
    """Field of view just larger than the body (as a technologist sets it), within the configured
    range; the fat thins if the body would not fit. Returns trunk, FOV and the image-centre y."""
    width, front, back = trunk.outer()
    table = 16.0
    fov = float(np.clip(max(2 * width, front + back + table) * rng.uniform(1.04, 1.18), *config.fov_mm))
    room = 0.49 * fov
    trunk = trunk.shrink_fat_to(room, room - table / 2, room - table / 2)
    width, front, back = trunk.outer()
    centre_y = trunk.cavity_y + (back + table - front) / 2 + rng.uniform(-0.03, 0.03) * fov
    return trunk, fov, centre_y


def plan_info(seed: int | np.random.SeedSequence, config: SynthConfig | None = None) -> CaseInfo:
    """What ``generate_case`` would draw (patient, subtype, tumors), without painting anything."""
    plan_ss = seed_sequence(seed).spawn(3)[0]
    return _info(_plan(np.random.default_rng(plan_ss), config or SynthConfig()))


def planned_grid(
    seed: int | np.random.SeedSequence, config: SynthConfig | None = None
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Shape and spacing (canonical) of the case ``generate_case`` would make, from its first,
    cheap steps (the same draws in the same order; nothing painted): to recognize a case of ours."""
    config = config or SynthConfig()
    given = seed_sequence(seed)
    # A copy: spawning from the caller's SeedSequence would move it on, and the case it then
    # generates would be another.
    copy = np.random.SeedSequence(
        given.entropy,
        spawn_key=given.spawn_key,
        pool_size=given.pool_size,
        n_children_spawned=given.n_children_spawned,
    )
    rng = np.random.default_rng(copy.spawn(3)[0])
    plan = _plan(rng, config)
    trunk = plan_trunk(rng, plan.patient, _placement(plan))
    _, fov, _ = _fit_field_of_view(rng, config, trunk)
    pixel = fov / config.size
    return (plan.n_slices, config.size, config.size), (plan.thickness, pixel, pixel)


def generate_case(seed: int | np.random.SeedSequence, config: SynthConfig | None = None) -> SyntheticCase:
    """One procedural KiTS-like case; the same seed and config give identical arrays."""
    config = config or SynthConfig()
    plan_ss, paint_ss, noise_ss = seed_sequence(seed).spawn(3)
    rng = np.random.default_rng(plan_ss)
    plan = _plan(rng, config)
    placement = _placement(plan)
    trunk = plan_trunk(rng, plan.patient, placement)
    trunk, fov, centre_y = _fit_field_of_view(rng, config, trunk)

    # Thick slices are rendered as `sub` thin sub-slices and averaged: a true slice profile.
    size, t = config.size, plan.thickness
    pixel = fov / size
    sub = int(np.clip(np.ceil(t / SUBSLICE_MM - 1e-6), 1, 4))
    origin_yx = (centre_y - (size - 1) / 2 * pixel, rng.uniform(-8, 8) - (size - 1) / 2 * pixel)
    fine = Grid(
        (plan.n_slices * sub, size, size),
        (t / sub, pixel, pixel),
        (plan.z_first - t / 2 + t / (2 * sub), *origin_yx),
    )
    tissue = _paint(plan, trunk, placement, fine, np.random.default_rng(paint_ss))

    lut = plan.appearance.lut()
    for tumor in plan.tumors:
        lut[tumor.tissue] = tumor.look.mean_hu
    hu = lut[tissue]
    for tumor in plan.tumors:
        tumor.texture(hu, tissue, fine)
    label = LABEL_OF_TISSUE[tissue]
    if sub > 1:
        hu = hu.reshape(plan.n_slices, sub, size, size).mean(axis=1, dtype=np.float32)
        tissue = np.ascontiguousarray(tissue[sub // 2 :: sub])
        label = _majority_label(label, sub)
    if plan.tumors and not (label == 2).any():  # keep min_tumors true even for sub-voxel tumors
        grid = Grid(label.shape, (t, pixel, pixel), (plan.z_first, *origin_yx))
        for index in filter(None, (grid.index_of(tumor.center) for tumor in plan.tumors)):
            label[index] = 2

    spacing = (t, pixel, pixel)
    image = form_image(
        hu,
        tissue,
        spacing,
        plan.appearance,
        np.random.default_rng(noise_ss),
        slice_profile=False,
        fov_circle=True,
        body_center_px=((trunk.cavity_y - origin_yx[0]) / pixel, -origin_yx[1] / pixel),
        body_radius_px=max(trunk.outer()) / pixel,
    )
    return SyntheticCase(image, label, tissue, kits_affine(spacing), _info(plan))


def _paint(
    plan: _Plan, trunk: Trunk, placement: KidneyPlacement, grid: Grid, rng: np.random.Generator
) -> np.ndarray:
    """The tissue map: anatomy, perirenal fat, renal vessels and ureters, kidneys, cysts, tumors."""
    steps = plan_anatomy(rng, trunk, placement, grid)
    steps += [PerirenalFat(k) for k in plan.kidneys]
    z_end = grid.origin[0] + grid.shape[0] * grid.spacing[0] + 10
    for k in plan.kidneys:
        steps += renal_vessels(k.hilum(), k.side, trunk.aorta, trunk.ivc)
        pelvis_exit = k.to_world(np.array([0.15 * k.radii[0], 0.0, -1.05 * k.radii[2]]))
        steps += ureter(pelvis_exit, k.side, trunk.spine.body_rx, z_end)
    steps += plan.kidneys + plan.cysts + plan.tumors
    tissue = np.zeros(grid.shape, dtype=np.uint8)
    for step in steps:
        step.paint(tissue, grid)
    return tissue


def _majority_label(label_fine: np.ndarray, sub: int) -> np.ndarray:
    """Label a thick slice as its sub-slices vote: foreground if half are, tumor if it outvotes kidney."""
    n = label_fine.shape[0] // sub
    shaped = label_fine.reshape(n, sub, *label_fine.shape[1:])
    kidney = (shaped == 1).sum(axis=1, dtype=np.uint8)
    tumor = (shaped == 2).sum(axis=1, dtype=np.uint8)
    label = np.zeros(kidney.shape, dtype=np.uint8)
    foreground = 2 * (kidney + tumor) >= sub
    label[foreground] = 1
    label[foreground & (tumor >= kidney)] = 2
    return label


def _info(plan: _Plan) -> CaseInfo:
    side_name = {-1: "right", 1: "left"}
    tumors = []
    for tumor in plan.tumors:
        nearest = min(plan.kidneys, key=lambda k: np.linalg.norm(np.subtract(k.center, tumor.center)))
        tumors.append(
            TumorInfo(
                subtype=plan.subtype or "",
                diameter_mm=round(tumor.diameter_mm, 1),
                growth=tumor.growth,
                mean_hu=round(tumor.look.mean_hu, 1),
                iso_dense=tumor.look.iso,
                necrosis=tumor.look.necrosis > 0,
                side=side_name[nearest.side],
            )
        )
    return CaseInfo(
        patient=plan.patient,
        phase=plan.appearance.phase,
        subtype=plan.subtype,
        tumors=tuple(tumors),
        kidneys=tuple(side_name[k.side] for k in plan.kidneys),
        cysts=len(plan.cysts),
        noise_sd=round(plan.appearance.noise_sd, 1),
        slice_thickness_mm=plan.thickness,
        hu=hu_by_name(plan.appearance),
    )
