"""The human-readable report: scores, clinical measurements and figures of a run, in Markdown."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from nephroseg.io.atomic import atomic_write_text
from nephroseg.report.measure import (
    TumorFinding,
    kidney_side_volumes_ml,
    structure_volumes_ml,
    tumor_detection,
    tumor_findings,
)

SCORES = (
    ("composite_dice", "composite Dice (KiTS score)"),
    ("kidney_tumor_dice", "kidney+tumor Dice"),
    ("tumor_dice", "tumor Dice"),
)
EMPTY_MASK_NOTE = (
    "Empty-mask Dice convention: when neither the prediction nor the ground truth contains a structure, "
    "its Dice is 1.0 (nothing to find, nothing found); when exactly one of them contains it, 0.0."
)
MEASUREMENT_NOTES = (
    "Volumes are voxel counts × voxel volume. Kidney is label 1 alone; tumor is label 2.",
    "Diameters are measured between voxel centres, so they can fall short of the edge-to-edge extent by up "
    "to one voxel. Tumors are 26-connected components; specks (by default below 0.05 ml) are not listed.",
    "kits.json `radiographic_size` is the clinical record's largest tumor diameter on CT (cm, any plane); "
    "compare it with the largest axial diameter / 10.",
    "Sides are the patient's: a finding whose centroid lies in the image's left half is on the patient's "
    "right (radiological display).",
    "Tumors found: true tumors (26-connected, specks left out as above) with at least one voxel predicted "
    "tumor; false tumors: predicted tumors that touch no true tumor voxel.",
)
DASH = "—"


@dataclass
class CaseReport:
    """What the report says about one case; ``metrics`` is empty when there is no ground truth."""

    case_id: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    volumes_ml: Mapping[str, float] = field(default_factory=dict)  # structure_volumes_ml keys
    tumors: Sequence[TumorFinding] = ()
    radiographic_size_cm: float | None = None  # kits.json, for comparison
    overlay: Path | None = None
    side_volumes_ml: Mapping[str, float] = field(default_factory=dict)  # kidney_side_volumes_ml keys
    viewer: Path | None = None  # the case's HTML page (viewer.py)
    source: Mapping[str, str] = field(default_factory=dict)  # a DICOM series' description (io.dicom)
    detection: Mapping[str, int] = field(default_factory=dict)  # measure.tumor_detection; with truth

    @classmethod
    def from_label(
        cls,
        case_id: str,
        label: np.ndarray,
        spacing: Sequence[float],
        *,
        metrics: Mapping[str, float] | None = None,
        radiographic_size_cm: float | None = None,
        overlay: Path | None = None,
        viewer: Path | None = None,
        source: Mapping[str, str] | None = None,
        min_tumor_ml: float = 0.05,
        truth: np.ndarray | None = None,
    ) -> CaseReport:
        """Measure a label map (usually the prediction) and wrap the result for the report; with
        ``truth`` (the ground truth on the same grid) tumors are also counted lesion by lesion."""
        tumors = tumor_findings(label, spacing, min_volume_ml=min_tumor_ml, truth=truth)
        detection = {} if truth is None else tumor_detection(label, truth, spacing, min_tumor_ml, tumors)
        return cls(
            case_id=case_id,
            metrics=dict(metrics or {}),
            volumes_ml=structure_volumes_ml(label, spacing),
            tumors=tumors,
            radiographic_size_cm=radiographic_size_cm,
            overlay=overlay,
            side_volumes_ml=kidney_side_volumes_ml(label, spacing),
            viewer=viewer,
            source=dict(source or {}),
            detection=detection,
        )

    @property
    def largest_axial_diameter_mm(self) -> float | None:
        return max((t.axial_diameter_mm for t in self.tumors), default=None)


def summarize_scores(cases: Sequence[CaseReport]) -> dict[str, dict[str, float]]:
    """Mean, SD (NaN for one case), median and worst of each KiTS score over the cases that have one."""
    summary = {}
    for key, _ in SCORES:
        values = np.array([c.metrics[key] for c in cases if _finite(c.metrics.get(key))], dtype=np.float64)
        if values.size:
            summary[key] = {
                "cases": float(values.size),
                "mean": float(values.mean()),
                "sd": float(values.std(ddof=1)) if values.size > 1 else math.nan,
                "median": float(np.median(values)),
                "min": float(values.min()),
            }
    return summary


def write_report_md(
    out_path: str | Path,
    cases: Sequence[CaseReport],
    summary: Mapping[str, object],
    figures: Mapping[str, Path],
    title: str = "nephroseg segmentation report",
    tables: Sequence[Path] = (),
) -> Path:
    """Write the report atomically. ``summary`` holds run facts (model, checkpoint, data…) shown as a
    table; figure links are written relative to the report's folder so the folder can be moved.
    ``tables``: CSV copies of the measurements (``tables.write_measurement_tables``), linked."""
    out = Path(out_path)
    lines = [f"# {title}", ""]
    if summary:
        lines += ["## Run", "", "| item | value |", "|---|---|"]
        lines += [f"| {_cell(key)} | {_cell(_plain(value))} |" for key, value in summary.items()]
        lines.append("")
    lines += _scores_section(cases)
    lines += _cases_section(cases, out.parent)
    lines += _findings_section(cases)
    lines += _sources_section(cases)
    if tables:
        links = ", ".join(f"[{_cell(Path(t).name)}]({_link(t, out.parent)})" for t in tables)
        lines += [f"The measurements above as CSV, unrounded: {links}.", ""]
    if figures:
        lines += ["## Figures", ""]
        for name, path in figures.items():
            lines += [f"### {name}", "", f"![{_cell(name)}]({_link(path, out.parent)})", ""]
    lines += ["## Notes", "", f"- {EMPTY_MASK_NOTE}"] + [f"- {note}" for note in MEASUREMENT_NOTES] + [""]
    atomic_write_text(out, "\n".join(lines))
    return out


def _scores_section(cases: Sequence[CaseReport]) -> list[str]:
    scores = summarize_scores(cases)
    lines = ["## Scores", ""]
    if not scores:
        return [*lines, "No ground truth for these cases, so no Dice scores: measurements only.", ""]
    lines += ["| score | cases | mean | SD | median | worst |", "|---|---:|---:|---:|---:|---:|"]
    for key, name in SCORES:
        if key in scores:
            s = scores[key]
            stats = [f"**{s['mean']:.3f}**"] + [_num(s[k], 3) for k in ("sd", "median", "min")]
            lines.append(_row([name, str(int(s["cases"])), *stats]))
    return [*lines, "", *_detection_summary(cases)]


def _detection_summary(cases: Sequence[CaseReport]) -> list[str]:
    counted = [c.detection for c in cases if c.detection]
    if not counted:
        return []
    true, found, false = (
        sum(d[k] for d in counted) for k in ("true_tumors", "true_tumors_found", "false_tumors")
    )
    share = f" ({100 * found / true:.0f} %)" if true else ""
    return [
        f"Tumors lesion by lesion over {len(counted)} cases: {found} of {true} true tumors found{share}, "
        f"{false} false tumors ({false / len(counted):.2f} per case).",
        "",
    ]


def _cases_section(cases: Sequence[CaseReport], folder: Path) -> list[str]:
    with_scores = any(c.metrics for c in cases)
    with_sides = any(c.side_volumes_ml for c in cases)
    with_overlay = any(c.overlay is not None for c in cases)
    with_viewer = any(c.viewer is not None for c in cases)
    header = ["case", "kidney ml", "tumor ml"]
    header += ["right / left kidney+tumor ml"] if with_sides else []
    header += ["tumors", "largest axial Ø mm", "kits.json size cm"]
    header += [name for _, name in SCORES] if with_scores else []
    with_detection = any(c.detection for c in cases)
    header += ["true tumors found", "false tumors"] if with_detection else []
    header += ["overlay"] if with_overlay else []
    header += ["viewer"] if with_viewer else []
    lines = ["## Cases", "", _row(header), _row(["---"] + ["---:"] * (len(header) - 1))]
    for case in cases:
        row = [
            _cell(case.case_id),
            _num(case.volumes_ml.get("kidney"), 1),
            _num(case.volumes_ml.get("tumor"), 1),
        ]
        if with_sides:
            sides = case.side_volumes_ml
            row.append(f"{_num(sides.get('right'), 1)} / {_num(sides.get('left'), 1)}")
        row += [
            str(len(case.tumors)),
            _num(case.largest_axial_diameter_mm, 1),
            _num(case.radiographic_size_cm, 1),
        ]
        if with_scores:
            row += [_num(case.metrics.get(key), 3) for key, _ in SCORES]
        if with_detection:
            d = case.detection
            row += (
                [f"{d['true_tumors_found']} of {d['true_tumors']}", str(d["false_tumors"])]
                if d
                else [DASH] * 2
            )
        if with_overlay:
            row.append(f"[png]({_link(case.overlay, folder)})" if case.overlay is not None else DASH)
        if with_viewer:
            row.append(f"[html]({_link(case.viewer, folder)})" if case.viewer is not None else DASH)
        lines.append(_row(row))
    return [*lines, ""]


def _findings_section(cases: Sequence[CaseReport]) -> list[str]:
    lines = ["## Tumor findings", ""]
    if not any(c.tumors for c in cases):
        return [*lines, "No tumor found in any case.", ""]
    with_truth = any(t.overlaps_true_tumor is not None for c in cases for t in c.tumors)
    header = ["case", "#", "side", "volume ml", "axial Ø mm", "3D Ø mm", "slices"]
    header += ["true tumor"] if with_truth else []
    lines += [
        _row(header),
        _row(["---", "---:", "---", "---:", "---:", "---:", "---"] + ["---"] * with_truth),
    ]
    for case in cases:
        for number, t in enumerate(case.tumors, start=1):
            slices = f"{t.slice_range[0]}–{t.slice_range[1]}"
            row = [_cell(case.case_id), str(number), t.side, _num(t.volume_ml, 2)]
            row += [_num(t.axial_diameter_mm, 1), _num(t.diameter_3d_mm, 1), slices]
            if with_truth:
                row.append({True: "yes", False: "**no**", None: DASH}[t.overlaps_true_tumor])
            lines.append(_row(row))
    return [*lines, ""]


def _sources_section(cases: Sequence[CaseReport]) -> list[str]:
    """The DICOM series each case was read from, to trace a result back to the PACS."""
    with_source = [case for case in cases if case.source]
    if not with_source:
        return []
    keys = list(dict.fromkeys(key for case in with_source for key in case.source))
    lines = ["## DICOM series", "", _row(["case", *keys]), _row(["---"] * (len(keys) + 1))]
    for case in with_source:
        lines.append(_row([_cell(case.case_id), *(_cell(case.source.get(key, "")) for key in keys)]))
    return [*lines, ""]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _plain(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _finite(value: object) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)


def _num(value: float | None, digits: int) -> str:
    return f"{value:.{digits}f}" if _finite(value) else DASH


def _link(path: str | Path, folder: Path) -> str:
    relative = os.path.relpath(Path(path).resolve(), folder.resolve())
    return quote(Path(relative).as_posix())
