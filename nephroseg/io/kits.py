"""The KiTS19 layout as it ships: ``DATA/case_NNNNN/{imaging,segmentation}.nii.gz`` and ``kits.json``."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from nephroseg.errors import NephrosegInputError, NephrosegInputWarning, listed
from nephroseg.io.atomic import atomic_write_text
from nephroseg.io.volume import AFFINE_TOLERANCE_MM, Volume, canonical_grid, read_geometry, read_volume

CASE_PATTERN = re.compile(r"^case_\d{5}$")
IMAGING_NAME = "imaging.nii.gz"
SEGMENTATION_NAME = "segmentation.nii.gz"


@dataclass(frozen=True)
class KitsCase:
    """One case folder. ``segmentation`` is None for test cases that ship without labels."""

    case_id: str
    imaging: Path
    segmentation: Path | None

    @property
    def folder(self) -> Path:
        return self.imaging.parent


def find_cases(data_dir: str | Path) -> list[KitsCase]:
    """All ``case_NNNNN`` folders under ``data_dir``, sorted by id; test cases have no segmentation."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise NephrosegInputError(data_dir, "data folder not found")
    cases = []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir() and CASE_PATTERN.match(p.name)):
        imaging = folder / IMAGING_NAME
        segmentation = folder / SEGMENTATION_NAME
        if not imaging.exists():
            raise NephrosegInputError(imaging, "file not found (every case folder needs imaging.nii.gz)")
        cases.append(KitsCase(folder.name, imaging, segmentation if segmentation.exists() else None))
    if not cases:
        raise NephrosegInputError(data_dir, "no case_NNNNN folders found (expected the KiTS19 layout)")
    return cases


def labelled_cases(data_dir: str | Path) -> list[KitsCase]:
    """The cases training can learn from: those with a segmentation. KiTS19 ships its test cases
    (210-299) in the same folder without one; they are left out, with a warning naming them."""
    cases = find_cases(data_dir)
    labelled = [case for case in cases if case.segmentation is not None]
    if not labelled:
        raise NephrosegInputError(
            data_dir, f"no case has a {SEGMENTATION_NAME}: training needs labelled cases"
        )
    unlabelled = [case.case_id for case in cases if case.segmentation is None]
    if unlabelled:
        shown = listed(unlabelled, 3, last=True)
        warnings.warn(
            NephrosegInputWarning(
                data_dir, f"{len(unlabelled)} case(s) without {SEGMENTATION_NAME} left out: {shown}"
            ),
            stacklevel=2,
        )
    return labelled


def check_same_grid(
    image_path: Path, label_path: Path, image_shape, image_affine, label_shape, label_affine
) -> None:
    """Refuse a label map whose voxels are not the image's. Grids are compared as read (canonical
    order): a label stored in another axis order or flipped, over the same voxels, is the same grid."""
    image_grid = canonical_grid(tuple(image_shape), image_affine)
    label_grid = canonical_grid(tuple(label_shape), label_affine)
    if image_grid[0] != label_grid[0]:
        image_axes, label_axes = ("-".join(nib.aff2axcodes(a)) for a in (image_affine, label_affine))
        if sorted(image_shape) == sorted(label_shape) and image_axes != label_axes:
            raise NephrosegInputError(
                label_path,
                f"label stored {tuple(label_shape)} with axes {label_axes} reads as {label_grid[0]}, "
                f"the image ({image_path}) stored {tuple(image_shape)} with axes {image_axes} as "
                f"{image_grid[0]}: their headers orient the voxels differently"
                + (" (a header without orientation reads as L-A-S)" if label_axes == "L-A-S" else ""),
            )
        raise NephrosegInputError(
            label_path,
            f"label shape {tuple(label_shape)} differs from image shape {tuple(image_shape)} ({image_path})",
        )
    if not np.allclose(image_grid[1], label_grid[1], atol=AFFINE_TOLERANCE_MM):
        worst = float(np.abs(image_grid[1] - label_grid[1]).max())
        raise NephrosegInputError(
            label_path,
            f"label affine differs from the image affine of {image_path} by up to {worst:.4g} mm "
            f"(tolerance {AFFINE_TOLERANCE_MM} mm)",
        )


def load_case(case: KitsCase) -> tuple[Volume, Volume | None]:
    """Read image and (if present) label, checking that both lie on the same grid."""
    if case.segmentation is not None:
        # Compare headers before reading gigabytes of voxels.
        check_same_grid(
            case.imaging, case.segmentation, *read_geometry(case.imaging), *read_geometry(case.segmentation)
        )
    image = read_volume(case.imaging)
    label = read_volume(case.segmentation, label=True) if case.segmentation is not None else None
    return image, label


# ---- kits.json: typed clinical records -------------------------------------------------------------


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class EgfrMeasurement(_Record):
    value: float | str | None = None  # e.g. 77.0 or ">=90"
    days_before_nephrectomy: int | None = None


class VoxelSpacing(_Record):
    x_spacing: float
    y_spacing: float
    z_spacing: float


class ClinicalRecord(_Record):
    """One entry of ``kits.json`` with the fields of the real file; unknown extra fields are kept."""

    case_id: str
    age_at_nephrectomy: int | None = None
    gender: str | None = None
    body_mass_index: float | None = None
    comorbidities: dict[str, bool] = {}
    smoking_history: str | None = None
    age_when_quit_smoking: str | int | None = None
    pack_years: int | str | None = None
    chewing_tobacco_use: str | None = None
    alcohol_use: str | None = None
    intraoperative_complications: dict[str, bool] = {}
    hospitalization: int | str | None = None
    ischemia_time: int | str | None = None
    radiographic_size: float | None = None  # cm, largest tumor diameter on CT
    pathologic_size: float | None = None
    malignant: bool | None = None
    pathology_t_stage: str | None = None
    pathology_n_stage: str | None = None
    pathology_m_stage: str | None = None
    tumor_histologic_subtype: str | None = None
    tumor_necrosis: bool | None = None
    tumor_isup_grade: int | None = None
    clavien_surgical_complications: str | None = None
    er_visit: bool | None = None
    readmission: bool | None = None
    estimated_blood_loss: int | None = None
    surgery_type: str | None = None
    surgical_procedure: str | None = None
    surgical_approach: str | None = None
    operative_time: int | None = None
    cytoreductive: bool | None = None
    positive_resection_margins: bool | None = None
    last_preop_egfr: EgfrMeasurement | None = None
    first_postop_egfr: EgfrMeasurement | None = None
    last_postop_egfr: EgfrMeasurement | None = None
    vital_status: str | None = None
    vital_days_after_surgery: int | None = None
    voxel_spacing: VoxelSpacing | None = None


def read_kits_json(path: str | Path) -> dict[str, ClinicalRecord]:
    """Parse ``kits.json`` into records keyed by case id; a malformed entry names its case and field."""
    path = Path(path)
    if not path.exists():
        raise NephrosegInputError(path, "file not found")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NephrosegInputError(path, f"not valid JSON ({err})") from err
    if not isinstance(entries, list):
        raise NephrosegInputError(path, "expected a JSON list of case records")
    records: dict[str, ClinicalRecord] = {}
    for index, entry in enumerate(entries):
        where = entry.get("case_id", f"entry {index}") if isinstance(entry, dict) else f"entry {index}"
        try:
            record = ClinicalRecord.model_validate(entry)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise NephrosegInputError(path, f"{where}: field '{field}': {first['msg']}") from err
        records[record.case_id] = record
    return records


def write_kits_json(path: str | Path, records: list[ClinicalRecord]) -> None:
    payload = [r.model_dump(mode="json", exclude_none=False) for r in records]
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
