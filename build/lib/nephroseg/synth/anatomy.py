"""Patient and abdominal layout: where the wall, spine, vessels and organs go around given kidneys.

The anatomical frame (mm): x = 0 at the midline (positive toward the patient's left), y = 0 at the
centre of the vertebral body (positive toward the back), z = 0 at the level of the renal hila
(positive toward the feet). Kidney positions come either from procedural kidneys or from a label
mask; everything else is placed relative to them, so the same planner serves both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from nephroseg.synth.body import Body, Rib, Spine
from nephroseg.synth.bowel import plan_colon, plan_small_bowel
from nephroseg.synth.intensity import Tissue, tissue_set
from nephroseg.synth.organs import Landmarks, plan_upper_abdomen
from nephroseg.synth.shapes import Capsule, Grid, Paintable, ZTube

FAT = tissue_set(Tissue.VISCERAL_FAT)
SOFT = tissue_set(Tissue.VISCERAL_FAT, Tissue.MUSCLE)


@dataclass(frozen=True)
class Patient:
    gender: str  # "male" / "female", as kits.json spells it
    age: int
    bmi: float


def draw_patient(rng: np.random.Generator) -> Patient:
    """Roughly the KiTS19 cohort: 61 % men, age 60 ± 12, BMI around 29 with a long right tail."""
    gender = "male" if rng.random() < 0.61 else "female"
    age = int(np.clip(round(rng.normal(60.0, 12.0)), 18, 90))
    bmi = float(np.round(np.clip(rng.lognormal(np.log(29.0), 0.2), 16.0, 55.0), 2))
    return Patient(gender, age, bmi)


@dataclass(frozen=True)
class KidneyPlacement:
    """What the body is built around: kidney centres and the box of all kidney and tumor tissue."""

    lo: tuple[float, float, float]  # (z, y, x) minimum of kidney + tumor tissue
    hi: tuple[float, float, float]
    right: tuple[float, float, float] | None  # kidney centres; None when that kidney is absent
    left: tuple[float, float, float] | None

    def centre(self, side: int) -> tuple[float, float, float]:
        """A kidney centre, mirrored from the other side when absent (organs still need an anchor)."""
        own, other = (self.left, self.right) if side > 0 else (self.right, self.left)
        if own is not None:
            return own
        assert other is not None, "at least one kidney is needed"
        return (other[0] - 15.0 * side, other[1], -other[2])  # the left kidney sits higher


@dataclass(frozen=True)
class Trunk:
    """Body size and the fixed retroperitoneal landmarks; organs are placed from these."""

    cavity_y: float
    half_width: float
    half_front: float
    half_back: float
    p_front: float
    p_back: float
    harmonics: tuple[tuple[int, float, float], ...]
    z_slope: float
    muscle: tuple[float, float, float]
    fat: tuple[float, float, float]
    fat_slope: float
    skin: float
    spine: Spine
    aorta: tuple[float, float, float]  # y, x, radius
    ivc: tuple[float, float, float, float]  # y, x, ry, rx

    @property
    def max_scale(self) -> float:
        return 1.0 + sum(abs(a) for _, a, _ in self.harmonics)

    def outer(self) -> tuple[float, float, float]:
        """Half width, front and back depth of the skin surface (mm from the cavity centre)."""
        s = self.max_scale * 1.08
        return (
            self.half_width * s + self.muscle[1] + self.fat[1] * 1.3 + self.skin,
            self.half_front * s + self.muscle[0] + self.fat[0] * 1.3 + self.skin,
            self.half_back * s + self.muscle[2] + self.fat[2] * 1.3 + self.skin,
        )

    def shrink_fat_to(self, half_width: float, front: float, back: float) -> Trunk:
        """Thin the subcutaneous fat (down to a third) so the body fits a field of view."""
        width, depth_f, depth_b = self.outer()
        factor = 1.0
        for have, room, fat in (
            (width, half_width, self.fat[1]),
            (depth_f, front, self.fat[0]),
            (depth_b, back, self.fat[2]),
        ):
            if have > room and fat > 0:
                factor = min(factor, max(1.0 - (have - room) / (1.3 * fat), 0.33))
        if factor >= 1.0:
            return self
        return replace(self, fat=tuple(f * factor for f in self.fat))  # type: ignore[arg-type]


def plan_trunk(rng: np.random.Generator, patient: Patient, kidneys: KidneyPlacement) -> Trunk:
    """Size the spine, vessels, cavity and wall so that the kidneys (and tumors) fit inside."""
    u = rng.uniform
    male = patient.gender == "male"
    size = 1.05 if male else 0.97
    spine = Spine(
        body_rx=u(19, 24) * size,
        body_ry=u(14, 17) * size,
        canal_r=u(7.5, 9.5),
        period=u(30, 37),
        disc=u(7, 10),
        phase=u(0, 37),
        spinous=u(22, 32),
        transverse=u(30, 42),
        growth=u(0.03, 0.08),
        z_ref=0.0,
    )
    r_ao = u(8.5, 11.5) + 0.03 * max(patient.age - 50, 0)
    aorta = (-spine.body_ry - r_ao - u(1, 4), u(8, 18), r_ao)
    ivc_ry, ivc_rx = u(7, 11), u(11, 16)
    ivc = (-spine.body_ry - ivc_ry - u(3, 10), -u(18, 28), ivc_ry, ivc_rx)

    visceral = max(patient.bmi - 21.0, 0.0) * u(0.6, 1.5) * (1.25 if male else 0.75)
    y_back = max(spine.canal_y + spine.canal_r + 3.0 + spine.spinous + u(0, 5), kidneys.hi[1] + u(8, 15))
    y_front = min(kidneys.lo[1] - u(35, 60), aorta[0] - r_ao - u(70, 120)) - visceral * u(0.8, 1.4)
    cavity_y = u(-25, 0)
    half_front, half_back = cavity_y - y_front, y_back - cavity_y
    p_front, p_back = u(1.9, 2.4), u(2.8, 3.8)
    half_width = u(105, 125) + visceral * 0.5

    # Widen (and deepen) the cavity until the kidneys and tumors sit inside with perirenal fat.
    margin = u(10, 18) + visceral * 0.3
    lateral = max(abs(kidneys.lo[2]), abs(kidneys.hi[2])) + margin
    for _ in range(3):
        dy = np.clip((max(kidneys.hi[1] - 8.0, cavity_y) - cavity_y) / half_back, 0.0, 0.9)
        half_width = max(half_width, lateral / (1.0 - dy**p_back) ** (1.0 / p_back))
        dx = np.clip((lateral - margin) / half_width, 0.0, 0.9)
        need_back = (kidneys.hi[1] + margin - cavity_y) / (1.0 - dx**p_back) ** (1.0 / p_back)
        half_back = max(half_back, need_back)

    muscle_scale = float(np.clip(1.15 - 0.006 * (patient.age - 30), 0.7, 1.15)) * (1.15 if male else 1.0)
    fat_base = max(4.0, (patient.bmi - 17.0) * u(1.0, 1.7)) * (0.85 if male else 1.2)
    return Trunk(
        cavity_y=cavity_y,
        half_width=half_width,
        half_front=half_front,
        half_back=half_back,
        p_front=p_front,
        p_back=p_back,
        harmonics=tuple((k, float(rng.normal(0, 0.02 / k**0.5)), u(0, 2 * np.pi)) for k in (2, 3, 4)),
        z_slope=u(-0.02, 0.05),
        muscle=(u(9, 14) * muscle_scale, u(10, 16) * muscle_scale, u(6, 10) * muscle_scale),
        fat=(fat_base * u(1.1, 1.4), fat_base * u(1.0, 1.3), fat_base * u(0.6, 0.85)),
        fat_slope=u(-0.05, 0.15),
        skin=u(1.5, 2.5),
        spine=spine,
        aorta=aorta,
        ivc=ivc,
    )


def plan_anatomy(
    rng: np.random.Generator, trunk: Trunk, kidneys: KidneyPlacement, grid: Grid
) -> list[Paintable]:
    """Everything but the kidneys, in painting order (later primitives lie on top where allowed)."""
    z0 = grid.origin[0]
    z1 = z0 + (grid.shape[0] - 1) * grid.spacing[0]
    rib12 = kidneys.lo[0] + rng.uniform(10, 40)  # the 12th rib crosses the upper renal poles
    out: list[Paintable] = [_body(rng, trunk, rib12)]
    out += _back_muscles(rng, trunk, kidneys, rib12, z0, z1)
    out.append(trunk.spine)
    out += _great_vessels(rng, trunk, kidneys, z0, z1)
    # Chest above the diaphragm, solid organs below it, then bowel in what is left of the front.
    zl, yl, xl = kidneys.centre(+1)
    cy, hw, hf, hb = trunk.cavity_y, trunk.half_width, trunk.half_front, trunk.half_back
    frame = Landmarks(cy, hw, hf, hb, kidneys.centre(-1)[0], zl, yl, xl, z0, z1, trunk.aorta, trunk.ivc)
    thorax, organs = plan_upper_abdomen(rng, frame)
    out += thorax + organs
    out += plan_colon(rng, frame)
    y_ao, _, r_ao = trunk.aorta
    lo = np.array([max(z0, -60.0), cy - hf + 10, -0.6 * hw])
    hi = np.array([max(z1 + 10, lo[0] + 30), max(y_ao - r_ao - 8, lo[1] + 30), 0.6 * hw])
    out += plan_small_bowel(rng, lo, hi, FAT)
    return out


def _body(rng: np.random.Generator, trunk: Trunk, rib12: float) -> Body:
    """Wall layers, ribs 12 up to 5 (the lowest two are floating and short), and the table."""
    u = rng.uniform
    spacing = u(22, 28)
    reaches = [u(0.35, 0.55) * np.pi, u(0.55, 0.7) * np.pi] + [0.85 * np.pi] * 6
    ribs = tuple(
        Rib(z_back=rib12 - i * spacing, reach=reach, height=u(8, 12), width=u(5, 8))
        for i, reach in enumerate(reaches)
    )
    return Body(
        center=(trunk.cavity_y, 0.0),
        half_width=trunk.half_width,
        half_front=trunk.half_front,
        half_back=trunk.half_back,
        p_front=trunk.p_front,
        p_back=trunk.p_back,
        harmonics=trunk.harmonics,
        z_ref=0.0,
        z_slope=trunk.z_slope,
        muscle=trunk.muscle,
        fat=trunk.fat,
        fat_slope=trunk.fat_slope,
        skin=trunk.skin,
        ribs=ribs,
        rib_slope=u(28, 40),
        table_gap=u(0.0, 3.0),
    )


def _back_muscles(
    rng: np.random.Generator, trunk: Trunk, kidneys: KidneyPlacement, rib12: float, z0: float, z1: float
) -> list[Paintable]:
    """Erector spinae behind the transverse processes, quadratus lumborum lateral to them (below the
    12th rib) and the psoas beside the vertebral bodies, growing toward the pelvis."""
    u = rng.uniform
    spine, back = trunk.spine, trunk.cavity_y + trunk.half_back
    es_ry = min((back - spine.canal_y + 4) / 2 + 3, u(20, 25))
    es_y, es_rx = back - es_ry + 4, u(20, 26)
    ql_y, ql_rx, ql_ry = spine.canal_y + u(0, 8), u(14, 20), u(9, 14)
    ps_top, ps_mid, ps_low = u(4, 7), u(9, 13), u(17, 24)
    out: list[Paintable] = []
    for side in (-1, 1):
        erector = (
            (z0 - 5, es_y, side * (es_rx + 1.5), es_ry, es_rx),
            (z1 + 5, es_y, side * (es_rx * 1.15 + 1.5), es_ry, es_rx * 1.15),
        )
        ql_x = side * (spine.transverse + ql_rx * 0.6)
        quadratus = (
            (rib12 - 10, ql_y, ql_x, ql_ry * 0.6, ql_rx * 0.6),
            (max(z1, rib12 + 60) + 5, ql_y, ql_x, ql_ry, ql_rx),
        )
        psoas = tuple(
            (z, -0.2 * r, side * (spine.body_rx + 0.8 * r + 1.0), r * 1.1, r)
            for z, r in sorted(
                ((kidneys.lo[0] - u(0, 20), ps_top), (0.0, ps_mid), (max(120.0, z1 + 5), ps_low))
            )
        )
        out += [ZTube(Tissue.MUSCLE, erector, SOFT), ZTube(Tissue.MUSCLE, quadratus, FAT)]
        out.append(ZTube(Tissue.MUSCLE, psoas, FAT))
    return out


def _great_vessels(
    rng: np.random.Generator, trunk: Trunk, kidneys: KidneyPlacement, z0: float, z1: float
) -> list[Paintable]:
    """Aorta and IVC (dividing into the iliac vessels below the kidneys), SMA and SMV, and small
    mesenteric branches in the fat."""
    u = rng.uniform
    y_ao, x_ao, r_ao = trunk.aorta
    y_iv, x_iv, ry_iv, rx_iv = trunk.ivc
    z_bif = max(kidneys.hi[0], 0.0) + u(30, 70)
    out: list[Paintable] = [
        ZTube(Tissue.ARTERY, ((z0 - 10, y_ao, x_ao, r_ao, r_ao), (z_bif, y_ao, x_ao, r_ao, r_ao)), SOFT),
        ZTube(
            Tissue.VEIN, ((z0 - 10, y_iv, x_iv, ry_iv, rx_iv), (z_bif + 10, y_iv, x_iv, ry_iv, rx_iv)), SOFT
        ),
    ]
    if z_bif < z1:
        end = z1 + 10
        spread, drop = 0.35 * (end - z_bif), 0.1 * (end - z_bif)
        for side in (-1, 1):
            artery = (
                (z_bif, y_ao, x_ao, 0.7 * r_ao, 0.7 * r_ao),
                (end, y_ao + drop, x_ao + side * spread, 0.65 * r_ao, 0.65 * r_ao),
            )
            vein = (
                (z_bif + 10, y_iv + 3, x_iv + side * 8, 0.8 * ry_iv, 0.6 * rx_iv),
                (end + 10, y_ao + 1.5 * drop + 6, x_ao + side * (spread + 6), 0.7 * ry_iv, 0.6 * rx_iv),
            )
            out += [ZTube(Tissue.ARTERY, artery, SOFT), ZTube(Tissue.VEIN, vein, SOFT)]
    sma_y = y_ao - r_ao - u(6, 10)
    out.append(
        ZTube(
            Tissue.ARTERY, ((-40.0, sma_y, x_ao - 2, 3.5, 3.5), (z1 + 5, sma_y - 35, x_ao - 8, 3.0, 3.0)), FAT
        )
    )
    out.append(
        ZTube(
            Tissue.VEIN,
            ((-40.0, sma_y - 2, x_ao - 14, 5.5, 5.5), (z1 + 5, sma_y - 37, x_ao - 22, 4.5, 4.5)),
            FAT,
        )
    )
    for _ in range(int(rng.integers(8, 16))):  # mesenteric branches
        start = np.array([u(-20, z1), sma_y - u(5, 20), x_ao - u(-10, 30)])
        end_point = start + np.array([u(20, 50), -u(20, 60), u(-40, 40)])
        kind = Tissue.ARTERY if rng.random() < 0.5 else Tissue.VEIN
        out.append(Capsule(kind, tuple(start), tuple(end_point), u(1.2, 2.2), FAT))
    return out
