"""Paint a CT image onto an existing KiTS label map (same grid), anatomy generated around it.

Kidney (1) and tumor (2) voxels come from the mask and are never painted over; inside them the
kidney gets a cortex rim (distance transform), pyramids and a pelvis on the medial side, and each
tumor component its own enhancement, texture and necrosis. The spine, body, liver, spleen and bowel
are placed around the mask's kidneys by the same planner as procedural cases.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi

from nephroseg.io.volume import Volume
from nephroseg.synth.anatomy import KidneyPlacement, Patient, Trunk, draw_patient, plan_anatomy, plan_trunk
from nephroseg.synth.config import SynthConfig
from nephroseg.synth.intensity import (
    KIDNEY_CLASSES,
    TUMOR_CLASSES,
    TUMOR_LABEL_CLASSES,
    Tissue,
    draw_appearance,
    form_image,
    tissue_set,
)
from nephroseg.synth.kidney import PERIRENAL_ROOM, renal_vessels, ureter
from nephroseg.synth.phantom import CaseInfo, SyntheticCase, TumorInfo, hu_by_name, kits_affine, seed_sequence
from nephroseg.synth.shapes import Box, Grid, Vec, put, smooth_field
from nephroseg.synth.tumor import SUBTYPE_WEIGHTS, SUBTYPES, TumorLook, add_texture, draw_tumor_look

MIN_UNIT_ML = 5.0  # smaller foreground specks get plain cortex/tumor, no internal structure
IS_KIDNEY = tissue_set(*KIDNEY_CLASSES)
IS_TUMOR = tissue_set(*TUMOR_LABEL_CLASSES)


@dataclass(frozen=True)
class _Unit:
    """A connected piece of kidney + tumor in the mask, in anatomical-frame millimetres."""

    box: Box
    centroid: np.ndarray  # (z, y, x) world mm
    side: int
    lo: np.ndarray
    hi: np.ndarray


def paint_from_mask(
    label: Volume | np.ndarray,
    seed: int | np.random.SeedSequence,
    config: SynthConfig | None = None,
    *,
    spacing: tuple[float, float, float] | None = None,
    subtype: str | None = None,
    patient: Patient | None = None,
) -> np.ndarray:
    """A CT image (int16 HU, same shape as the mask) painted onto a canonical KiTS label map.

    ``label`` is a Volume (read with ``read_volume(path, label=True)``) or a canonical (I, P, L)
    array with ``spacing`` (slice, row, column) in mm.
    """
    return paint_case_from_mask(label, seed, config, spacing=spacing, subtype=subtype, patient=patient).image


def paint_case_from_mask(
    label: Volume | np.ndarray,
    seed: int | np.random.SeedSequence,
    config: SynthConfig | None = None,
    *,
    spacing: tuple[float, float, float] | None = None,
    subtype: str | None = None,
    patient: Patient | None = None,
) -> SyntheticCase:
    """Like ``paint_from_mask`` but returns the whole case (image, the mask itself, tissues, info)."""
    config = config or SynthConfig()
    mask, spacing, affine = _checked_mask(label, spacing)
    plan_ss, paint_ss, noise_ss = seed_sequence(seed).spawn(3)
    rng = np.random.default_rng(plan_ss)
    patient, subtype = _identity(rng, patient, subtype, bool((mask == 2).any()))
    appearance = draw_appearance(rng, config.noise_sd_hu, patient.bmi, patient.age)
    grid, units, trunk = _plan_around(mask, spacing, patient, rng)

    paint_rng = np.random.default_rng(paint_ss)
    tissue = _paint_anatomy(mask, grid, units, trunk, patient, paint_rng)
    cortex_mm = paint_rng.uniform(4, 7)
    cysts = sum(
        _paint_kidney(tissue, mask, unit, grid, cortex_mm, config.cyst_probability, paint_rng)
        for unit in units
    )
    looks = _paint_tumors(tissue, mask, grid, subtype, appearance.parenchyma_hu, paint_rng)
    # Every labelled voxel carries a class of its label, whatever the pieces above did.
    tissue[(mask == 1) & ~IS_KIDNEY[tissue]] = Tissue.CORTEX
    tissue[(mask == 2) & ~IS_TUMOR[tissue]] = TUMOR_CLASSES[-1]

    lut = appearance.lut()
    for tumor_class, (look, _, _) in looks.items():
        lut[tumor_class] = look.mean_hu
    hu = lut[tissue]
    for tumor_class, (look, box, seed_t) in looks.items():
        add_texture(hu, tissue, box, tumor_class, look, spacing, seed_t)
    centre_px = ((trunk.cavity_y - grid.origin[1]) / spacing[1], (0.0 - grid.origin[2]) / spacing[2])
    image = form_image(
        hu,
        tissue,
        spacing,
        appearance,
        np.random.default_rng(noise_ss),
        slice_profile=True,
        fov_circle=_is_scanner_grid(mask),
        body_center_px=centre_px,
        body_radius_px=max(trunk.outer()) / spacing[1],
    )
    tumors = tuple(
        TumorInfo(
            subtype or "",
            round(size, 1),
            "from_mask",
            round(look.mean_hu, 1),
            look.iso,
            look.necrosis > 0,
            "left" if side > 0 else "right",
        )
        for look, size, side in _tumor_summaries(looks, grid)
    )
    info = CaseInfo(
        patient=patient,
        phase=appearance.phase,
        subtype=subtype,
        tumors=tumors,
        kidneys=tuple(sorted({"left" if u.side > 0 else "right" for u in units})),
        cysts=cysts,
        noise_sd=round(appearance.noise_sd, 1),
        slice_thickness_mm=spacing[0],
        hu=hu_by_name(appearance),
    )
    return SyntheticCase(image, mask, tissue, affine, info)


def _plan_around(
    mask: np.ndarray, spacing: Vec, patient: Patient, rng: np.random.Generator
) -> tuple[Grid, list[_Unit], Trunk]:
    """The anatomical frame and body for a mask: spine between the kidneys, body round them, fat
    thinned if the body would not fit the image."""
    image_grid = Grid(
        mask.shape,
        spacing,
        (0.0, -(mask.shape[1] - 1) / 2 * spacing[1], -(mask.shape[2] - 1) / 2 * spacing[2]),
    )
    units, frame_origin = _kidney_units(mask, image_grid, rng)
    grid = Grid(mask.shape, spacing, tuple(np.subtract(image_grid.origin, frame_origin)))
    units = [
        _Unit(u.box, u.centroid - frame_origin, u.side, u.lo - frame_origin, u.hi - frame_origin)
        for u in units
    ]
    trunk = plan_trunk(rng, patient, _placement(units))
    ny, nx = mask.shape[1:]
    y_min, x_min = grid.origin[1], grid.origin[2]
    y_max, x_max = y_min + (ny - 1) * spacing[1], x_min + (nx - 1) * spacing[2]
    room = (0.98 * min(x_max, -x_min), trunk.cavity_y - y_min - 2, y_max - trunk.cavity_y - 16)
    return grid, units, trunk.shrink_fat_to(*room)


def _paint_anatomy(
    mask: np.ndarray, grid: Grid, units: list[_Unit], trunk: Trunk, patient: Patient, rng: np.random.Generator
) -> np.ndarray:
    """Everything but the kidneys, then renal vessels, ureters and perirenal fat round the mask."""
    steps = plan_anatomy(rng, trunk, _placement(units), grid)
    perirenal = float(np.clip(rng.uniform(5, 10) + 0.4 * max(patient.bmi - 22.0, 0.0), 5.0, 22.0))
    z_end = grid.origin[0] + mask.shape[0] * grid.spacing[0] + 10
    for unit in units:
        if abs(unit.centroid[2]) < 25:  # horseshoe isthmus: no hilum of its own
            continue
        half_x = (unit.hi[2] - unit.lo[2]) / 2
        hilum = unit.centroid + np.array([0.0, -5.0, -unit.side * 0.45 * half_x])
        steps += renal_vessels(hilum, unit.side, trunk.aorta, trunk.ivc)
        steps += ureter(hilum, unit.side, trunk.spine.body_rx, z_end)
    tissue = np.zeros(mask.shape, dtype=np.uint8)
    for step in steps:
        step.paint(tissue, grid)
    for unit in units:
        _paint_perirenal_fat(tissue, mask, unit, grid.spacing, perirenal)
    return tissue


def mask_case_identity(
    seed: int | np.random.SeedSequence, patient: Patient | None, subtype: str | None, has_tumor: bool
) -> tuple[Patient, str | None]:
    """The patient and subtype ``paint_case_from_mask`` draws for these arguments (cheap)."""
    return _identity(np.random.default_rng(seed_sequence(seed).spawn(3)[0]), patient, subtype, has_tumor)


def _identity(
    rng: np.random.Generator, patient: Patient | None, subtype: str | None, has_tumor: bool
) -> tuple[Patient, str | None]:
    drawn_patient = draw_patient(rng)
    drawn_subtype = str(rng.choice(SUBTYPES, p=SUBTYPE_WEIGHTS))
    return patient or drawn_patient, (subtype or drawn_subtype) if has_tumor else None


def _is_scanner_grid(mask: np.ndarray) -> bool:
    """A square matrix whose labels all lie in the inscribed circle: a whole reconstructed slice (not
    a crop), so the corners outside the scanner's field of view can be blanked as scanners do."""
    ny, nx = mask.shape[1:]
    if ny != nx:
        return False
    rows, cols = np.nonzero((mask > 0).any(axis=0))
    return bool(np.all((rows - (ny - 1) / 2) ** 2 + (cols - (nx - 1) / 2) ** 2 <= (ny / 2) ** 2))


def _checked_mask(
    label: Volume | np.ndarray, spacing: tuple[float, float, float] | None
) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    """The canonical mask, its spacing and canonical affine (the KiTS affine for a plain array)."""
    affine = None
    if isinstance(label, Volume):
        array, spacing, affine = label.array, label.spacing, label.affine
    else:
        array = np.asarray(label)
        if spacing is None:
            raise ValueError("spacing (slice, row, column) in mm is needed when the mask is a plain array")
    if array.ndim != 3:
        raise ValueError(f"label map must be 3-D, got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() > 2):
        raise ValueError("label map values must lie in {0, 1, 2}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive numbers, got {spacing}")
    affine = kits_affine(spacing) if affine is None else np.asarray(affine, dtype=np.float64)
    return array.astype(np.uint8, copy=False), spacing, affine  # type: ignore[return-value]


def _kidney_units(mask: np.ndarray, grid: Grid, rng: np.random.Generator) -> tuple[list[_Unit], np.ndarray]:
    """Connected kidney pieces and the anatomical frame origin (midline, vertebral body, hila)."""
    foreground = mask > 0
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    crop = ndi.find_objects(foreground.astype(np.uint8))
    raw = []
    if crop:
        (zc, yc, xc) = crop[0]
        components, _ = ndi.label(foreground[crop[0]])
        for index, box in enumerate(ndi.find_objects(components), start=1):
            piece = components[box] == index
            if piece.sum() * voxel_ml < MIN_UNIT_ML:
                continue
            full = tuple(
                slice(b.start + c.start, b.stop + c.start) for b, c in zip(box, (zc, yc, xc), strict=True)
            )
            centre = np.array(ndi.center_of_mass(piece)) + [s.start for s in full]
            lo = [grid.origin[d] + full[d].start * grid.spacing[d] for d in range(3)]
            hi = [grid.origin[d] + (full[d].stop - 1) * grid.spacing[d] for d in range(3)]
            world = np.asarray(grid.origin) + centre * np.asarray(grid.spacing)
            raw.append((full, world, np.array(lo), np.array(hi), int(piece.sum())))
    if not raw:  # no kidney at all: imagine a pair at the usual place so the anatomy has an anchor
        middle = np.array([grid.shape[0] * grid.spacing[0] / 2, 20.0, 0.0])
        return [], middle - [0.0, 15.0, 0.0]
    raw.sort(key=lambda r: -r[4])
    if len(raw) >= 2 and np.sign(raw[0][1][2]) != np.sign(raw[1][1][2]):
        x_mid = (raw[0][1][2] + raw[1][1][2]) / 2
    else:
        main = raw[0]
        spans = main[2][2] < 0 < main[3][2]
        cx = main[1][2]
        x_mid = cx if spans else (0.0 if abs(cx) >= 40 else cx - np.sign(cx or 1.0) * 65.0)
    z_mid = float(np.mean([r[1][0] for r in raw[:2]]))
    y_vb = float(np.mean([r[1][1] for r in raw[:2]])) - rng.uniform(0, 15)
    # Kidney tissue near the midline (a horseshoe isthmus) must lie in front of the aorta and spine.
    band = slice(
        *np.clip(
            np.round(((x_mid - 25.0, x_mid + 25.0) - np.float64(grid.origin[2])) / grid.spacing[2]).astype(
                int
            ),
            0,
            grid.shape[2],
        )
    )
    rows = np.flatnonzero(foreground[:, :, band].any(axis=(0, 2)))
    if rows.size:
        y_vb = max(y_vb, grid.origin[1] + rows.max() * grid.spacing[1] + 45.0)
    origin = np.array([z_mid, y_vb, x_mid])
    units = [_Unit(full, world, 1 if world[2] - x_mid >= 0 else -1, lo, hi) for full, world, lo, hi, _ in raw]
    return units, origin


def _placement(units: list[_Unit]) -> KidneyPlacement:
    if not units:
        return KidneyPlacement(
            (-60.0, -10.0, -100.0), (60.0, 50.0, 100.0), (8.0, 15.0, -68.0), (-8.0, 15.0, 68.0)
        )
    lo = np.min([u.lo for u in units], axis=0)
    hi = np.max([u.hi for u in units], axis=0)
    sides = {}
    for unit in units:  # units are sorted largest first: keep the largest per side
        sides.setdefault(unit.side, tuple(unit.centroid))
    return KidneyPlacement(tuple(lo), tuple(hi), sides.get(-1), sides.get(1))


def _grown(box: Box, shape: tuple[int, ...], spacing: Vec, margin_mm: float) -> Box:
    return tuple(
        slice(max(b.start - int(np.ceil(margin_mm / s)), 0), min(b.stop + int(np.ceil(margin_mm / s)), n))
        for b, s, n in zip(box, spacing, shape, strict=True)
    )


def _paint_perirenal_fat(
    tissue: np.ndarray, mask: np.ndarray, unit: _Unit, spacing: Vec, thickness: float
) -> None:
    box = _grown(unit.box, mask.shape, spacing, thickness + 1)
    outside = mask[box] == 0
    distance = ndi.distance_transform_edt(outside, sampling=spacing)
    put(tissue, box, outside & (distance <= thickness), Tissue.PERIRENAL_FAT, PERIRENAL_ROOM)


def _paint_kidney(
    tissue: np.ndarray,
    mask: np.ndarray,
    unit: _Unit,
    grid: Grid,
    cortex_mm: float,
    cyst_p: float,
    rng: np.random.Generator,
) -> int:
    """Cortex as the outer rim, pyramids as cones from the centre, pelvis toward the hilum; cysts
    (inside the kidney label only, so the mask stays exact). Returns the number of cysts."""
    box = _grown(unit.box, mask.shape, grid.spacing, 2)
    sub = mask[box]
    kidney = sub == 1
    if not kidney.any():
        return 0
    depth = ndi.distance_transform_edt(sub > 0, sampling=grid.spacing)
    z, y, x = grid.coords(box)
    rel = [
        z - np.float32(unit.centroid[0]),
        y - np.float32(unit.centroid[1]),
        x - np.float32(unit.centroid[2]),
    ]
    cls = np.full(sub.shape, Tissue.CORTEX, dtype=np.uint8)
    deep = kidney & (depth > cortex_mm)
    norm = np.sqrt(rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2) + np.float32(1e-3)
    medial = np.array([0.0, -0.35, -unit.side])  # the hilum faces medially and a little forward
    medial /= np.linalg.norm(medial)
    in_cone = np.zeros(sub.shape, dtype=bool)
    for _ in range(int(rng.integers(8, 13))):
        axis = rng.normal(size=3)
        axis -= max(axis @ medial, 0.0) * medial  # no pyramid pointing into the hilum
        axis /= np.linalg.norm(axis)
        cos_half = np.cos(rng.uniform(0.25, 0.4))
        in_cone |= (rel[0] * axis[0] + rel[1] * axis[1] + rel[2] * axis[2]) > cos_half * norm
    cls[deep & in_cone] = Tissue.MEDULLA
    half = (np.asarray(unit.hi) - np.asarray(unit.lo)) / 2
    pelvis_c = medial * np.array([0.0, 0.4 * half[1], 0.45 * half[2]])
    pelvis = (
        sum(
            ((r - np.float32(c)) / np.float32(s)) ** 2
            for r, c, s in zip(rel, pelvis_c, (0.25 * half[0] + 5, 10.0, 10.0), strict=True)
        )
        < 1.0
    )
    cls[pelvis & (depth > 2.0)] = Tissue.URINE
    cysts = 0
    if rng.random() < cyst_p:
        candidates = np.argwhere(kidney & (depth > 6.0))
        for _ in range(int(rng.integers(1, 3))):
            if not len(candidates):
                break
            cysts += 1
            centre = candidates[int(rng.integers(len(candidates)))]
            radius = rng.uniform(4.0, 12.0)
            world = [grid.origin[d] + (box[d].start + centre[d]) * grid.spacing[d] for d in range(3)]
            dist2 = sum((c - np.float32(w)) ** 2 for c, w in zip((z, y, x), world, strict=True))
            cls[np.broadcast_to(dist2 < radius**2, cls.shape)] = Tissue.CYST
    put(tissue, box, kidney, cls)
    return cysts


def _paint_tumors(
    tissue: np.ndarray,
    mask: np.ndarray,
    grid: Grid,
    subtype: str | None,
    parenchyma_hu: float,
    rng: np.random.Generator,
) -> dict[int, tuple[TumorLook, Box, int]]:
    """One class, look, texture and (when large) necrotic core per tumor component."""
    looks: dict[int, tuple[TumorLook, tuple, int]] = {}
    tumor = mask == 2
    crop = ndi.find_objects(tumor.astype(np.uint8))
    if not crop or subtype is None:
        return looks
    components, count = ndi.label(tumor[crop[0]])
    boxes = ndi.find_objects(components)
    order = sorted(range(count), key=lambda i: -int((components[boxes[i]] == i + 1).sum()))
    for rank, index in enumerate(order):
        box_c = boxes[index]
        box = tuple(slice(b.start + c.start, b.stop + c.start) for b, c in zip(box_c, crop[0], strict=True))
        piece = components[box_c] == index + 1
        tumor_class = TUMOR_CLASSES[min(rank, len(TUMOR_CLASSES) - 1)]
        extent = max((b.stop - b.start) * s for b, s in zip(box, grid.spacing, strict=True))
        look = draw_tumor_look(rng, subtype, parenchyma_hu, extent)
        cls = np.full(piece.shape, tumor_class, dtype=np.uint8)
        if look.necrosis > 0 and extent > 25:
            depth = ndi.distance_transform_edt(piece, sampling=grid.spacing)
            cls[depth > (1.0 - look.necrosis) * depth.max()] = Tissue.NECROSIS
        else:
            look = replace(look, necrosis=0.0)  # too small to show a necrotic core
        if look.fat > 0:
            blobs = smooth_field(rng, piece.shape, tuple(look.texture_mm * 1.5 / s for s in grid.spacing))
            cls[blobs > np.quantile(blobs, 1.0 - look.fat)] = Tissue.TUMOR_FAT
        put(tissue, box, piece, cls)
        if tumor_class not in looks:
            looks[tumor_class] = (look, box, int(rng.integers(2**31)))
    return looks


def _tumor_summaries(
    looks: dict[int, tuple[TumorLook, Box, int]], grid: Grid
) -> Iterator[tuple[TumorLook, float, int]]:
    """(look, largest box extent in mm, side) per painted tumor class."""
    for look, box, _ in looks.values():
        extent = max((b.stop - b.start) * s for b, s in zip(box, grid.spacing, strict=True))
        centre_x = grid.origin[2] + (box[2].start + box[2].stop) / 2 * grid.spacing[2]
        yield look, extent, 1 if centre_x >= 0 else -1
