"""The report's measurements as CSV, for statistics elsewhere (pandas, R, a spreadsheet): one row
per case in ``cases.csv``, one per tumor in ``tumors.csv``, unrounded; empty cells where a value
does not exist (no ground truth, no tumor)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nephroseg.io.atomic import atomic_write_csv
from nephroseg.report.markdown import SCORES, CaseReport

DETECTION_KEYS = ("true_tumors", "true_tumors_found", "false_tumors")  # measure.tumor_detection

CASE_COLUMNS = (
    "case_id",
    "kidney_ml",
    "tumor_ml",
    "kidney_tumor_ml",
    "right_kidney_tumor_ml",
    "left_kidney_tumor_ml",
    "tumors",
    "largest_axial_diameter_mm",
    "kits_json_size_cm",
    *(key for key, _ in SCORES),
    *DETECTION_KEYS,
)
TUMOR_COLUMNS = (
    "case_id",
    "tumor",
    "side",
    "volume_ml",
    "voxels",
    "axial_diameter_mm",
    "axial_diameter_slice",
    "diameter_3d_mm",
    "first_slice",
    "last_slice",
    "centroid_slice",
    "centroid_row",
    "centroid_column",
    "overlaps_true_tumor",
)


def write_measurement_tables(out_dir: str | Path, cases: Sequence[CaseReport]) -> tuple[Path, Path]:
    """``cases.csv`` and ``tumors.csv`` in ``out_dir``; slices, rows and columns are indices of the
    canonical (I-P-L) volume, as in report.md and the viewer."""
    out_dir = Path(out_dir)
    case_rows: list[Sequence[object]] = [CASE_COLUMNS]
    tumor_rows: list[Sequence[object]] = [TUMOR_COLUMNS]
    for case in cases:
        volumes, sides = case.volumes_ml, case.side_volumes_ml
        case_rows.append(
            [
                case.case_id,
                *(_value(volumes.get(key)) for key in ("kidney", "tumor", "kidney_tumor")),
                _value(sides.get("right")),
                _value(sides.get("left")),
                len(case.tumors),
                _value(case.largest_axial_diameter_mm),
                _value(case.radiographic_size_cm),
                *(_value(case.metrics.get(key)) for key, _ in SCORES),
                *(case.detection.get(key, "") for key in DETECTION_KEYS),
            ]
        )
        for number, t in enumerate(case.tumors, start=1):
            tumor_rows.append(
                [
                    case.case_id,
                    number,
                    t.side,
                    _value(t.volume_ml),
                    t.voxel_count,
                    _value(t.axial_diameter_mm),
                    t.axial_diameter_slice,
                    _value(t.diameter_3d_mm),
                    *t.slice_range,
                    *(_value(c) for c in t.centroid_voxel),
                    "" if t.overlaps_true_tumor is None else str(t.overlaps_true_tumor).lower(),
                ]
            )
    cases_csv, tumors_csv = out_dir / "cases.csv", out_dir / "tumors.csv"
    atomic_write_csv(cases_csv, case_rows)
    atomic_write_csv(tumors_csv, tumor_rows)
    return cases_csv, tumors_csv


def _value(number: float | None) -> str:
    """Full precision (repr round-trips a float); empty for a missing value."""
    return "" if number is None else repr(float(number))
