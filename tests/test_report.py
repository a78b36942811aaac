"""Report: measurements checked against geometry with known answers, pictures and Markdown on disk."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import kits_affine, save_nifti
from matplotlib.figure import Figure
from matplotlib.image import imread

from nephroseg.errors import NephrosegInputError
from nephroseg.report import (
    CaseReport,
    OverlayCase,
    error_slice,
    kidney_side_volumes_ml,
    overlay_grid_png,
    overlay_png,
    pick_slice,
    structure_volumes_ml,
    summarize_scores,
    training_curves_png,
    tumor_detection,
    tumor_findings,
    write_report_md,
)
from nephroseg.report.build import build_report
from nephroseg.report.plots import CURVES_FIGSIZE, DPI, OVERLAY_EXTRA_HEIGHT, PANEL_INCHES
from nephroseg.report.tables import write_measurement_tables

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LOG_HEADER = "epoch,step,train_loss,val_kidney_tumor_dice,val_tumor_dice,val_composite_dice,lr,seconds\n"


def ellipsoid(shape, spacing, center_vox, radius_mm) -> np.ndarray:
    """Voxels whose centre lies within ``radius_mm`` of a centre, in mm (a sphere on an anisotropic grid)."""
    grids = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    dist2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, center_vox, spacing, strict=True))
    return dist2 <= radius_mm**2


def assert_png(path: Path, width: int, height: int) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert imread(path).shape[:2] == (height, width)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "temporary files left behind"


# ---- measurements ------------------------------------------------------------------------------


def test_sphere_volume_and_3d_diameter_at_anisotropic_spacing():
    spacing, radius = (2.5, 0.7, 0.9), 15.0
    label = ellipsoid((20, 56, 44), spacing, (9.6, 27.3, 21.8), radius).astype(np.uint8) * 2
    (finding,) = tumor_findings(label, spacing)
    expected_ml = 4.0 / 3.0 * math.pi * radius**3 / 1000.0
    assert finding.volume_ml == pytest.approx(expected_ml, rel=0.03)
    assert abs(finding.diameter_3d_mm - 2 * radius) <= max(spacing)
    assert abs(finding.axial_diameter_mm - 2 * radius) <= max(spacing[1:])
    assert finding.centroid_voxel == pytest.approx((9.6, 27.3, 21.8), abs=0.2)


def test_disk_axial_diameter_and_cylinder_3d_diameter():
    # A disk of 12 px radius (0.8 mm pixels) repeated on 3 slices 4 mm apart: a short cylinder.
    spacing, radius_px = (4.0, 0.8, 0.8), 12
    disk = ellipsoid((1, 40, 40), (1.0, 1.0, 1.0), (0, 20, 20), radius_px)[0]
    label = np.zeros((5, 40, 40), np.uint8)
    label[1:4][:, disk] = 2
    (finding,) = tumor_findings(label, spacing)
    assert finding.axial_diameter_mm == pytest.approx(2 * radius_px * 0.8, abs=0.8)
    assert finding.axial_diameter_mm == pytest.approx(19.2)  # centre to centre, exact for an integer radius
    assert finding.diameter_3d_mm == pytest.approx(math.hypot(19.2, 2 * 4.0))
    assert finding.slice_range == (1, 3)
    assert 1 <= finding.axial_diameter_slice <= 3


def test_axial_diameter_is_in_mm_with_unequal_pixel_sides():
    spacing, radius = (3.0, 0.6, 0.9), 10.0  # an ellipse in pixels, a circle in mm
    label = ellipsoid((1, 50, 40), (1.0, *spacing[1:]), (0, 25, 20), radius).astype(np.uint8) * 2
    (finding,) = tumor_findings(label, spacing)
    assert abs(finding.axial_diameter_mm - 2 * radius) <= 0.9
    assert finding.diameter_3d_mm == pytest.approx(finding.axial_diameter_mm)  # one slice: flat hull fallback


def test_two_tumors_sorted_by_volume_with_sides_and_specks_dropped():
    spacing = (1.0, 1.0, 1.0)
    label = np.zeros((20, 30, 60), np.uint8)
    label[2:12, 5:15, 5:15] = 2  # 1000 voxels in the image's left half: patient right
    label[5:10, 10:15, 45:50] = 2  # 125 voxels: patient left
    label[15, 25, 30] = 2  # a 1 mm³ speck, below 0.05 ml
    findings = tumor_findings(label, spacing)
    assert [f.voxel_count for f in findings] == [1000, 125]
    assert [f.side for f in findings] == ["right", "left"]
    assert findings[0].volume_ml == pytest.approx(1.0)
    assert findings[0].slice_range == (2, 11)
    assert findings[0].diameter_3d_mm == pytest.approx(math.sqrt(3 * 9**2))
    assert len(tumor_findings(label, spacing, min_volume_ml=0.0)) == 3


def _lesion_case() -> tuple[np.ndarray, np.ndarray]:
    """At 1 mm³ voxels: true tumors A (1000 voxels) and B (125), a true 8-voxel speck; the prediction
    touches A with one voxel only, misses B, and adds a false tumor C (216) and a false speck (1)."""
    truth = np.zeros((20, 40, 60), np.uint8)
    truth[2:12, 5:15, 5:15] = 2  # A
    truth[5:10, 20:25, 45:50] = 2  # B
    truth[15:17, 30:32, 30:32] = 2  # speck, 0.008 ml
    prediction = np.zeros_like(truth)
    prediction[11, 14, 14] = 2  # one voxel of A's corner, part of a lesion of 64 voxels reaching outside A
    prediction[11:15, 14:18, 14:18] = 2
    prediction[2:8, 30:36, 40:46] = 2  # C, touching no true tumor
    prediction[18, 2, 2] = 2  # a false speck
    return truth, prediction


def test_tumor_detection_counts_lesions_by_hand():
    truth, prediction = _lesion_case()
    spacing = (1.0, 1.0, 1.0)
    assert tumor_detection(prediction, truth, spacing) == {
        "true_tumors": 2,  # A and B; the speck is below 0.05 ml
        "true_tumors_found": 1,  # A, by one voxel
        "false_tumors": 1,  # C; the false speck is not a finding
    }
    assert tumor_detection(truth, truth, spacing) == {
        "true_tumors": 2,
        "true_tumors_found": 2,
        "false_tumors": 0,
    }
    assert tumor_detection(prediction, truth, spacing, min_volume_ml=0.0) == {
        "true_tumors": 3,
        "true_tumors_found": 1,
        "false_tumors": 2,
    }
    findings = tumor_findings(prediction, spacing, truth=truth)
    assert [(f.voxel_count, f.overlaps_true_tumor) for f in findings] == [(216, False), (64, True)]
    assert tumor_detection(prediction, truth, spacing, findings=findings) == tumor_detection(
        prediction, truth, spacing
    )
    assert all(f.overlaps_true_tumor is None for f in tumor_findings(prediction, spacing))
    with pytest.raises(ValueError, match="shape"):
        tumor_detection(prediction, truth[:, :10], spacing)


def test_report_counts_tumors_lesion_by_lesion(tmp_path):
    import csv

    truth, prediction = _lesion_case()
    cases = [
        CaseReport.from_label(
            "case_00001", prediction, (1.0, 1.0, 1.0), metrics={"tumor_dice": 0.1}, truth=truth
        ),
        CaseReport.from_label("case_00002", truth, (1.0, 1.0, 1.0), metrics={"tumor_dice": 1.0}, truth=truth),
    ]
    text = write_report_md(tmp_path / "r.md", cases, {}, {}).read_text(encoding="utf-8")
    assert "3 of 4 true tumors found (75 %), 1 false tumors (0.50 per case)" in text
    assert "| 1 of 2 | 1 |" in text and "| 2 of 2 | 0 |" in text
    assert "| case_00001 | 1 | left | 0.22 | 7.1 | 8.7 | 2–7 | **no** |" in text
    assert "| case_00001 | 2 | right | 0.06 |" in text and text.count("| yes |") == 3
    cases_csv, tumors_csv = write_measurement_tables(tmp_path, cases)
    rows = list(csv.DictReader(cases_csv.open()))
    assert [(r["true_tumors"], r["true_tumors_found"], r["false_tumors"]) for r in rows] == [
        ("2", "1", "1"),
        ("2", "2", "0"),
    ]
    assert [t["overlaps_true_tumor"] for t in csv.DictReader(tumors_csv.open())] == ["false", "true"] + [
        "true"
    ] * 2


def test_diagonal_voxels_are_one_tumor():
    label = np.zeros((6, 6, 6), np.uint8)
    for i in range(1, 5):
        label[i, i, i] = 2  # corner-touching only: one lesion under 26-connectivity
    (finding,) = tumor_findings(label, (1.0, 1.0, 1.0), min_volume_ml=0.0)
    assert finding.voxel_count == 4
    assert finding.diameter_3d_mm == pytest.approx(3 * math.sqrt(3))  # collinear: degenerate hull


def test_structure_volumes_equal_hand_count_times_voxel_volume():
    spacing = (2.0, 0.5, 0.8)  # 0.8 mm³ per voxel
    label = np.zeros((4, 5, 6), np.uint8)
    label[0, :2, :3] = 1  # 6 kidney voxels
    label[1:3, 1:4, 2] = 1  # 6 more
    label[3, 4, :5] = 2  # 5 tumor voxels
    volumes = structure_volumes_ml(label, spacing)
    assert volumes["kidney"] == pytest.approx(12 * 0.8 / 1000)
    assert volumes["tumor"] == pytest.approx(5 * 0.8 / 1000)
    assert volumes["kidney_tumor"] == pytest.approx(17 * 0.8 / 1000)
    assert structure_volumes_ml(np.zeros((2, 2, 2), np.uint8), spacing) == {
        "kidney": 0.0,
        "tumor": 0.0,
        "kidney_tumor": 0.0,
    }


def test_kidney_side_volumes_keep_a_tumor_with_its_kidney():
    label = np.zeros((10, 20, 40), np.uint8)
    label[2:8, 5:15, 2:12] = 1  # patient right kidney: 600 voxels
    label[4:6, 8:12, 12:22] = 2  # its tumor crosses the midline (column 19.5): 80 voxels
    label[3:7, 5:10, 30:35] = 1  # patient left kidney: 100 voxels
    sides = kidney_side_volumes_ml(label, (1.0, 2.0, 0.5))
    assert sides["right"] == pytest.approx(680 * 1e-3)
    assert sides["left"] == pytest.approx(100 * 1e-3)


def test_measurements_reject_bad_inputs():
    with pytest.raises(ValueError, match="spacing"):
        structure_volumes_ml(np.zeros((2, 2, 2), np.uint8), (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="3D"):
        tumor_findings(np.zeros((2, 2), np.uint8), (1.0, 1.0, 1.0))


# ---- training curves ---------------------------------------------------------------------------


def write_log(path: Path, rows: list[str]) -> Path:
    path.write_text(LOG_HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def test_training_curves_png_with_missing_validation_values(tmp_path):
    log = write_log(
        tmp_path / "train_log.csv",
        [
            "0,50,1.20,,,,0.001,10.0",
            "1,100,0.80,0.70,0.30,0.50,0.0009,20.0",
            "2,150,0.60,,,,0.0008,30.0",
            "3,200,0.45,0.90,0.55,0.725,0.0007,40.0",
        ],
    )
    out = tmp_path / "figures" / "curves.png"
    assert training_curves_png(log, out) == out
    width, height = (round(v * DPI) for v in CURVES_FIGSIZE)
    assert_png(out, width, height)


def test_training_curves_png_with_one_row_and_no_validation(tmp_path):
    log = write_log(tmp_path / "log.csv", ["0,1,2.5,,,,0.01,1.5"])
    out = tmp_path / "out" / "curves.png"
    training_curves_png(log, out)
    assert_png(out, *(round(v * DPI) for v in CURVES_FIGSIZE))


@pytest.mark.parametrize(
    "content",
    [
        "",  # empty file
        LOG_HEADER,  # header only
        "a,b,c\n1,2,3\n",  # not a training log
        LOG_HEADER + "0,1,oops,,,,0.1,1\n",  # a non-number
    ],
)
def test_bad_training_log_leaves_no_png(tmp_path, content):
    log = tmp_path / "log.csv"
    log.write_text(content, encoding="utf-8")
    out_dir = tmp_path / "out"
    with pytest.raises(NephrosegInputError):
        training_curves_png(log, out_dir / "curves.png")
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_failed_render_leaves_old_png_and_no_temp_file(tmp_path, monkeypatch):
    log = write_log(tmp_path / "log.csv", ["0,1,2.5,0.5,0.2,0.35,0.01,1.5"])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "curves.png").write_bytes(b"previous")

    def half_written(self, fname, **kwargs):
        Path(fname).write_bytes(PNG_SIGNATURE)
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(OSError, match="disk full"):
        training_curves_png(log, out_dir / "curves.png")
    assert [p.name for p in out_dir.iterdir()] == ["curves.png"]
    assert (out_dir / "curves.png").read_bytes() == b"previous"


# ---- overlays ----------------------------------------------------------------------------------


def synthetic_case(shape=(12, 64, 80)):
    """CT with two kidneys (right one with a tumor) and a prediction that misses part of the tumor."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    image = np.full(shape, -900.0, np.float32)
    image[(y - 32) ** 2 / 28**2 + (x - 40) ** 2 / 36**2 <= 1] = 20.0  # body
    truth = np.zeros(shape, np.uint8)
    truth[(z >= 2) & (z <= 9) & ((y - 36) ** 2 / 12**2 + (x - 20) ** 2 / 7**2 <= 1)] = 1
    truth[(z >= 2) & (z <= 9) & ((y - 36) ** 2 / 12**2 + (x - 60) ** 2 / 7**2 <= 1)] = 1
    tumor = (z >= 4) & (z <= 7) & ((y - 30) ** 2 + (x - 22) ** 2 <= (5 - abs(z - 6)) ** 2 + 9)
    truth[tumor] = 2
    prediction = truth.copy()
    prediction[(prediction == 2) & (x > 23)] = 1
    image[truth == 1] = 180.0
    image[truth == 2] = 60.0
    return image, truth, prediction


def test_pick_slice_prefers_largest_tumor_then_kidney():
    _, truth, prediction = synthetic_case()
    assert pick_slice(truth, prediction) == int(np.argmax((truth == 2).sum(axis=(1, 2))))
    no_tumor = np.zeros((6, 10, 10), np.uint8)
    no_tumor[1:5, 2:6, 2:6] = 1
    no_tumor[3, 0, :10] = 1  # one slice with the most kidney
    assert pick_slice(no_tumor, None) == 3
    tumor_in_prediction_only = no_tumor.copy()
    tumor_in_prediction_only[1, 3, 3] = 2
    assert pick_slice(no_tumor, tumor_in_prediction_only) == 1
    assert pick_slice(None, truth) == pick_slice(truth, None)
    assert pick_slice(np.zeros((6, 2, 2), np.uint8), None) == 3


def test_error_slice_is_the_most_wrong_slice_tumor_first():
    _, truth, _ = synthetic_case()
    assert error_slice(truth, truth) is None
    prediction = truth.copy()
    prediction[10, 30:34, 50:56] = 2  # 24 voxels of false tumor in kidney, away from the true tumor
    prediction[3, 10:20, 10:20] = 1  # 100 voxels of false kidney: more, but not tumor
    assert error_slice(truth, prediction) == 10
    assert error_slice(truth, prediction, skip=slice(9, 12)) == 3  # then the most kidney error elsewhere
    assert error_slice(truth, prediction, skip=slice(0, 12)) is None
    kidney_only = np.where(truth == 2, 1, truth)
    wrong_kidney = kidney_only.copy()
    wrong_kidney[3, 10:20, 10:20] = 1
    assert error_slice(kidney_only, wrong_kidney) == 3


def test_report_overlay_adds_the_largest_error_row_when_elsewhere(tmp_path):
    image, truth, prediction = synthetic_case()
    affine = kits_affine((3.0, 0.8, 0.8))
    for case_id, pred in (("case_00001", prediction), ("case_00002", prediction.copy())):
        save_nifti(tmp_path / "data" / case_id / "imaging.nii.gz", image, affine, np.int16)
        save_nifti(tmp_path / "data" / case_id / "segmentation.nii.gz", truth, affine, np.uint8)
        if case_id == "case_00002":
            pred[10, 26:38, 50:62] = 2  # a large false tumor on a slice without true tumor
        save_nifti(tmp_path / "pred" / f"{case_id}.nii.gz", pred, affine, np.uint8)
    build_report(
        tmp_path / "pred", tmp_path / "data", tmp_path / "report", gt_dir=tmp_path / "data", progress=False
    )
    figures = tmp_path / "report" / "figures"
    one_row = round((PANEL_INCHES + OVERLAY_EXTRA_HEIGHT) * DPI)
    two_rows = round((2 * PANEL_INCHES + OVERLAY_EXTRA_HEIGHT / 2) * DPI)
    assert imread(figures / "case_00001.png").shape[:2] == (one_row, round(3 * PANEL_INCHES * DPI))
    assert imread(figures / "case_00002.png").shape[:2] == (two_rows, round(3 * PANEL_INCHES * DPI))


def test_overlay_png_three_panels(tmp_path):
    image, truth, prediction = synthetic_case()
    out = tmp_path / "overlays" / "case_00001.png"
    assert overlay_png(image, truth, prediction, out, "case_00001", spacing=(3.0, 0.8, 0.8)) == out
    height = round((PANEL_INCHES + OVERLAY_EXTRA_HEIGHT) * DPI)
    assert_png(out, round(3 * PANEL_INCHES * DPI), height)


def test_overlay_png_prediction_only_and_explicit_slice(tmp_path):
    image, _, prediction = synthetic_case()
    out = tmp_path / "pred_only.png"
    overlay_png(image, None, prediction, out, "test case", spacing=(3.0, 0.7, 0.9), slice_index=0)
    assert_png(out, round(2 * PANEL_INCHES * DPI), round((PANEL_INCHES + OVERLAY_EXTRA_HEIGHT) * DPI))


def test_overlay_png_refuses_mismatched_shapes_and_writes_nothing(tmp_path):
    image, truth, _ = synthetic_case()
    with pytest.raises(ValueError, match="shape"):
        overlay_png(image, truth[:, :10], None, tmp_path / "x.png", "bad")
    with pytest.raises(ValueError, match="slice"):
        overlay_png(image, truth, None, tmp_path / "x.png", "bad", slice_index=99)
    assert list(tmp_path.iterdir()) == []


def test_overlay_grid_png(tmp_path):
    image, truth, prediction = synthetic_case()
    cases = [
        OverlayCase("case_00001", image, truth, prediction),
        OverlayCase("case_00002", image, None, truth),
    ]
    out = overlay_grid_png(cases, tmp_path / "grid.png")
    assert_png(out, round(3 * PANEL_INCHES * DPI), round((2 * PANEL_INCHES + OVERLAY_EXTRA_HEIGHT / 2) * DPI))


# ---- Markdown report ---------------------------------------------------------------------------


def test_report_markdown_has_scores_cases_findings_and_relative_links(tmp_path):
    _, truth, prediction = synthetic_case()
    figures_dir = tmp_path / "run" / "figures"
    figures_dir.mkdir(parents=True)
    overlay = figures_dir / "case_00001.png"
    cases = [
        CaseReport.from_label(
            "case_00001",
            prediction,
            (3.0, 0.8, 0.8),
            metrics={"composite_dice": 0.8, "kidney_tumor_dice": 0.95, "tumor_dice": 0.65},
            radiographic_size_cm=1.2,
            overlay=overlay,
        ),
        CaseReport.from_label(
            "case_00002",
            truth,
            (3.0, 0.8, 0.8),
            metrics={"composite_dice": 0.6, "kidney_tumor_dice": 0.9, "tumor_dice": 0.3},
        ),
    ]
    assert summarize_scores(cases)["composite_dice"]["mean"] == pytest.approx(0.7)
    out = tmp_path / "run" / "report.md"
    written = write_report_md(
        out, cases, {"model": "unet2d", "cases": 2}, {"training curves": figures_dir / "curves.png"}
    )
    text = written.read_text(encoding="utf-8")
    assert "| composite Dice (KiTS score) | 2 | **0.700** |" in text
    assert "| case_00001 |" in text and "| case_00002 |" in text
    volumes = cases[0].volumes_ml
    assert f"| case_00001 | {volumes['kidney']:.1f} | {volumes['tumor']:.1f} |" in text
    assert "| 1.2 | 0.800 | 0.950 | 0.650 | [png](figures/case_00001.png) |" in text
    assert "![training curves](figures/curves.png)" in text
    assert "| model | unet2d |" in text
    assert "neither the prediction nor the ground truth contains a structure, its Dice is 1.0" in text
    assert "exactly one of them contains it, 0.0" in text
    assert "| case_00001 | 1 | right |" in text  # the tumor sits in the image's left half
    assert sorted(p.name for p in out.parent.iterdir()) == ["figures", "report.md"]  # no temp files


def test_report_without_ground_truth_says_so(tmp_path):
    label = np.zeros((3, 8, 8), np.uint8)
    out = write_report_md(tmp_path / "r.md", [CaseReport.from_label("case_00210", label, (1, 1, 1))], {}, {})
    text = out.read_text(encoding="utf-8")
    assert "no Dice scores" in text
    assert "Dice" not in text.split("## Cases")[1].split("## Tumor findings")[0]
    assert "| case_00210 | 0.0 | 0.0 | 0.0 / 0.0 | 0 | — | — |" in text
    assert "No tumor found" in text


# ---- CSV tables ------------------------------------------------------------------------------------


def test_measurement_tables_hold_hand_counted_values(tmp_path):
    """Two tumor blocks of known size in the patient's right kidney (image left half), a tumor-free
    left kidney, at 2 × 1 × 1 mm (2 µl a voxel): the CSV rows, unrounded, against hand counts."""
    import csv

    label = np.zeros((10, 20, 40), np.uint8)
    label[1:9, 2:18, 2:18] = 1  # right kidney block (image columns < 20)
    label[1:9, 2:18, 24:38] = 1  # left kidney block
    label[2:6, 3:8, 3:8] = 2  # tumor A: 4 × 5 × 5 = 100 voxels, 0.2 ml
    label[6:9, 12:16, 12:16] = 2  # tumor B: 3 × 4 × 4 = 48 voxels, 0.096 ml (not 26-connected to A)
    report = CaseReport.from_label("case_00007", label, (2.0, 1.0, 1.0), metrics={"composite_dice": 0.5})
    cases_csv, tumors_csv = write_measurement_tables(tmp_path, [report])
    (case,) = list(csv.DictReader(cases_csv.open()))
    kidney_voxels = 8 * 16 * 16 + 8 * 16 * 14 - 148
    assert float(case["kidney_ml"]) == pytest.approx(kidney_voxels * 0.002)
    assert float(case["tumor_ml"]) == pytest.approx(0.296)
    assert float(case["right_kidney_tumor_ml"]) == pytest.approx(8 * 16 * 16 * 0.002)
    assert float(case["left_kidney_tumor_ml"]) == pytest.approx(8 * 16 * 14 * 0.002)
    assert case["tumors"] == "2" and case["composite_dice"] == "0.5" and case["tumor_dice"] == ""
    assert case["kits_json_size_cm"] == "" and float(case["largest_axial_diameter_mm"]) == pytest.approx(
        32**0.5
    )
    tumors = list(csv.DictReader(tumors_csv.open()))
    assert [(t["tumor"], t["side"], t["voxels"], t["first_slice"], t["last_slice"]) for t in tumors] == [
        ("1", "right", "100", "2", "5"),
        ("2", "right", "48", "6", "8"),
    ]
    assert float(tumors[0]["volume_ml"]) == pytest.approx(0.2)
    assert float(tumors[0]["diameter_3d_mm"]) == pytest.approx((6**2 + 4**2 + 4**2) ** 0.5)
    assert float(tumors[1]["axial_diameter_mm"]) == pytest.approx((3**2 + 3**2) ** 0.5)
    assert [float(tumors[0][k]) for k in ("centroid_slice", "centroid_row", "centroid_column")] == [
        3.5,
        5.0,
        5.0,
    ]


def test_report_links_its_csv_tables(tmp_path):
    image, _, prediction = synthetic_case()
    affine = kits_affine((3.0, 0.8, 0.8))
    save_nifti(tmp_path / "data" / "case_00001" / "imaging.nii.gz", image, affine, np.int16)
    save_nifti(tmp_path / "pred" / "case_00001.nii.gz", prediction, affine, np.uint8)
    build_report(tmp_path / "pred", tmp_path / "data", tmp_path / "report", viewer=False, progress=False)
    text = (tmp_path / "report" / "report.md").read_text()
    assert (
        "The measurements above as CSV, unrounded: [cases.csv](cases.csv), [tumors.csv](tumors.csv)." in text
    )
    rows = (tmp_path / "report" / "cases.csv").read_text().splitlines()
    assert rows[0].startswith("case_id,kidney_ml,tumor_ml,") and rows[1].startswith("case_00001,")


def test_report_reads_labels_in_any_storage_order_and_refuses_another_grid(tmp_path):
    """Prediction and truth are checked against the CT's grid as read: saved R-A-S over its voxels
    they give the same tables; moved by 3 mm (the same shape) they are refused, nothing written."""
    import nibabel as nib

    image, truth, prediction = synthetic_case()
    affine = kits_affine((3.0, 0.8, 0.8))
    save_nifti(tmp_path / "data" / "case_00001" / "imaging.nii.gz", image, affine, np.int16)
    save_nifti(tmp_path / "data" / "case_00001" / "segmentation.nii.gz", truth, affine, np.uint8)
    save_nifti(tmp_path / "pred" / "case_00001.nii.gz", prediction, affine, np.uint8)
    data = tmp_path / "data"
    build_report(tmp_path / "pred", data, tmp_path / "kept", gt_dir=data, viewer=False, progress=False)
    for name in ("pred/case_00001.nii.gz", "data/case_00001/segmentation.nii.gz"):
        nib.save(nib.as_closest_canonical(nib.load(tmp_path / name)), tmp_path / name)
    build_report(tmp_path / "pred", data, tmp_path / "ras", gt_dir=data, viewer=False, progress=False)
    for table in ("cases.csv", "tumors.csv"):
        assert (tmp_path / "ras" / table).read_text() == (tmp_path / "kept" / table).read_text()
    for name in ("pred/case_00001.nii.gz", "data/case_00001/segmentation.nii.gz"):
        stored = nib.load(tmp_path / name)
        moved = stored.affine.copy()
        moved[0, 3] += 3.0
        nib.save(nib.Nifti1Image(np.asarray(stored.dataobj), moved), tmp_path / "moved.nii.gz")
        saved = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes((tmp_path / "moved.nii.gz").read_bytes())
        with pytest.raises(NephrosegInputError, match=f"{name}: label affine differs .* 3 mm"):
            build_report(tmp_path / "pred", data, tmp_path / "bad", gt_dir=data, viewer=False, progress=False)
        (tmp_path / name).write_bytes(saved)
        assert not (tmp_path / "bad").exists()


def test_report_replaces_its_own_files_but_not_a_users(tmp_path):
    """A second report into the same folder replaces the first; a report.md, cases.csv or tumors.csv
    the report did not write is refused before any figure is drawn."""
    image, _, prediction = synthetic_case()
    affine = kits_affine((3.0, 0.8, 0.8))
    save_nifti(tmp_path / "data" / "case_00001" / "imaging.nii.gz", image, affine, np.int16)
    save_nifti(tmp_path / "pred" / "case_00001.nii.gz", prediction, affine, np.uint8)
    out = tmp_path / "report"
    for _ in range(2):
        build_report(tmp_path / "pred", tmp_path / "data", out, viewer=False, progress=False)
    for name in ("report.md", "cases.csv", "tumors.csv"):
        mine = tmp_path / f"mine_{name}"
        mine.mkdir()
        (mine / name).write_text("the user's own\n")
        with pytest.raises(
            NephrosegInputError, match=f"{name}: exists and was not written by nephroseg report"
        ):
            build_report(tmp_path / "pred", tmp_path / "data", mine, viewer=False, progress=False)
        assert sorted(p.name for p in mine.iterdir()) == [name]


def _two_case_report_inputs(tmp_path: Path) -> tuple[Path, Path]:
    image, _, prediction = synthetic_case()
    affine = kits_affine((3.0, 0.8, 0.8))
    for case in ("case_00001", "case_00002"):
        save_nifti(tmp_path / "data" / case / "imaging.nii.gz", image, affine, np.int16)
        save_nifti(tmp_path / "pred" / f"{case}.nii.gz", prediction, affine, np.uint8)
    return tmp_path / "pred", tmp_path / "data"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_report_that_fails_on_a_later_case_leaves_the_folder_as_it_was(tmp_path):
    """The report is drawn into a hidden folder and moved into place only whole: a case refused after
    others were drawn leaves an earlier report's figures and pages as they were, and a new folder
    not made at all."""
    pred, data = _two_case_report_inputs(tmp_path)
    out = tmp_path / "report"
    build_report(pred, data, out, progress=False)
    before = _files(out)
    assert {"report.md", "figures/case_00002.png", "viewer/case_00002.html"} <= set(before)
    zeros = np.zeros(synthetic_case()[0].shape, np.uint8)
    save_nifti(pred / "case_00001.nii.gz", zeros, kits_affine((3.0, 0.8, 0.8)), np.uint8)  # drawn first
    nib_moved(pred / "case_00002.nii.gz", 3.0)  # refused second
    with pytest.raises(NephrosegInputError, match=r"case_00002\.nii\.gz: label affine differs"):
        build_report(pred, data, out, progress=False)
    assert _files(out) == before  # the hidden staging folder gone too
    with pytest.raises(NephrosegInputError, match="label affine differs"):
        build_report(pred, data, tmp_path / "new" / "report", progress=False)
    assert not (tmp_path / "new" / "report").exists()


def nib_moved(path: Path, shift_mm: float) -> Path:
    """Rewrite a label file with its grid moved ``shift_mm`` along the first world axis."""
    import nibabel as nib

    stored = nib.load(path)
    moved = stored.affine.copy()
    moved[0, 3] += shift_mm
    data = np.asarray(stored.dataobj)
    path.unlink()
    nib.save(nib.Nifti1Image(data, moved), path)
    return path


def test_report_refuses_figures_and_pages_of_the_users_own(tmp_path):
    """A figure or viewer page of a case's name that the report did not draw is refused before any
    work (an earlier report's are replaced, as above); so are an --out that is a file and a --run
    that does not exist."""
    pred, data = _two_case_report_inputs(tmp_path)
    for name, content in (
        ("figures/case_00002.png", b"my own figure"),
        ("viewer/case_00001.html", b"<html>"),
    ):
        out = tmp_path / name.replace("/", "_")
        (out / name).parent.mkdir(parents=True)
        (out / name).write_bytes(content)
        with pytest.raises(NephrosegInputError, match=f"{name}: exists and is not a nephroseg report"):
            build_report(pred, data, out, progress=False)
        assert _files(out) == {name: content}
    log = tmp_path / "run" / "log.csv"
    log.parent.mkdir()
    log.write_text(LOG_HEADER + "0,10,0.9,0.5,0.2,0.35,0.001,1.0\n")
    out = tmp_path / "curves"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "curves.png").write_bytes(PNG_SIGNATURE + b"a photo")
    with pytest.raises(
        NephrosegInputError, match=r"curves\.png: exists and is not a nephroseg report figure"
    ):
        build_report(pred, data, out, run_dir=log.parent, viewer=False, progress=False)
    build_report(pred, data, tmp_path / "ok", run_dir=log.parent, viewer=False, progress=False)
    build_report(pred, data, tmp_path / "ok", run_dir=log.parent, viewer=False, progress=False)  # its own
    (tmp_path / "file").write_text("mine")
    with pytest.raises(NephrosegInputError, match="file: exists and is not a folder"):
        build_report(pred, data, tmp_path / "file", progress=False)
    with pytest.raises(NephrosegInputError, match=r"nosuch: no such training run folder \(--run\)"):
        build_report(pred, data, tmp_path / "r", run_dir=tmp_path / "nosuch", progress=False)
    assert (tmp_path / "file").read_text() == "mine" and not (tmp_path / "r").exists()
