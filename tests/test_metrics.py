"""Scores against hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import kits_affine, save_nifti

from nephroseg.errors import NephrosegInputError
from nephroseg.metrics import (
    case_metrics,
    dice,
    evaluate_folders,
    iou,
    kits_scores,
    per_class_scores,
    pixel_accuracy,
    slice_mean_iou,
    write_evaluation,
)


def test_dice_and_iou_of_a_known_overlap() -> None:
    truth = np.zeros(100, bool)
    truth[:40] = True  # 40 voxels
    prediction = np.zeros(100, bool)
    prediction[20:70] = True  # 50 voxels, 20 shared
    assert dice(prediction, truth) == pytest.approx(2 * 20 / 90)
    assert iou(prediction, truth) == pytest.approx(20 / 70)


def test_empty_mask_convention() -> None:
    empty = np.zeros(10, bool)
    some = empty.copy()
    some[3] = True
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert dice(some, empty) == 0.0 and dice(empty, some) == 0.0
    assert iou(some, empty) == 0.0


def test_kits_scores_merge_kidney_and_tumor() -> None:
    truth = np.array([0, 1, 1, 1, 2, 2, 0, 0])
    prediction = np.array([0, 1, 1, 2, 2, 0, 1, 0])
    # kidney+tumor: truth {1..5} (5), prediction {1..4, 6} (5), shared {1..4} (4) → 8/10
    # tumor: truth {4, 5}, prediction {3, 4}, shared {4} → 2/4
    scores = kits_scores(prediction, truth)
    assert scores.kidney_tumor_dice == pytest.approx(0.8)
    assert scores.tumor_dice == pytest.approx(0.5)
    assert scores.composite_dice == pytest.approx(0.65)


def test_case_without_tumor_predicted_without_tumor_scores_one() -> None:
    truth = np.array([0, 1, 1, 0])
    assert kits_scores(truth, truth).tumor_dice == 1.0
    assert kits_scores(np.array([0, 1, 2, 0]), truth).tumor_dice == 0.0


def test_per_class_scores_and_pixel_accuracy() -> None:
    truth = np.array([0, 0, 1, 1, 2, 2])
    prediction = np.array([0, 1, 1, 1, 2, 0])
    scores = per_class_scores(prediction, truth)
    assert scores["background_dice"] == pytest.approx(2 * 1 / 4)
    assert scores["kidney_dice"] == pytest.approx(2 * 2 / 5)
    assert scores["kidney_iou"] == pytest.approx(2 / 3)
    assert scores["tumor_iou"] == pytest.approx(1 / 2)
    assert pixel_accuracy(prediction, truth) == pytest.approx(4 / 6)


def test_slice_mean_iou_with_and_without_empty_slices() -> None:
    truth = np.zeros((2, 2, 2), np.uint8)
    prediction = np.zeros((2, 2, 2), np.uint8)
    truth[0] = [[1, 1], [0, 2]]
    prediction[0] = [[1, 0], [0, 2]]
    # slice 0: background IoU 1/2, kidney 1/2, tumor 1 → mean 2/3; slice 1 is empty and perfect → 1.0
    assert slice_mean_iou(prediction, truth, skip_empty=True) == pytest.approx(2 / 3)
    assert slice_mean_iou(prediction, truth, skip_empty=False) == pytest.approx((2 / 3 + 1) / 2)


def test_shape_mismatch_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="differs"):
        kits_scores(np.zeros(3), np.zeros(4))


def test_case_metrics_has_every_reported_key() -> None:
    labels = np.array([[[0, 1], [2, 0]]])
    metrics = case_metrics(labels, labels)
    assert metrics["composite_dice"] == 1.0
    assert metrics["pixel_accuracy"] == 1.0
    assert {"kidney_dice", "tumor_iou", "slice_mean_iou", "slice_mean_iou_nonempty"} <= set(metrics)


def test_evaluate_folders_matches_case_ids_and_writes_csv_and_json(tmp_path: Path) -> None:
    affine = kits_affine((2.0, 1.0, 1.0))
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[0, :2, :2] = 1
    truth[1, 0, 0] = 2
    for i in range(2):
        save_nifti(tmp_path / "gt" / f"case_{i:05d}" / "segmentation.nii.gz", truth, affine, np.uint8)
    save_nifti(tmp_path / "pred" / "case_00000.nii.gz", truth, affine, np.uint8)  # perfect
    save_nifti(
        tmp_path / "pred" / "prediction_00001.nii.gz", (truth > 0).astype(np.uint8), affine
    )  # no tumor
    evaluation = evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    assert evaluation.per_case["case_00000"]["composite_dice"] == 1.0
    assert evaluation.per_case["case_00001"]["tumor_dice"] == 0.0
    assert evaluation.composite_dice == pytest.approx((1.0 + 0.5) / 2)
    csv_path, json_path = write_evaluation(evaluation, tmp_path / "out")
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("case_id,kidney_tumor_dice,tumor_dice,composite_dice")
    assert lines[-1].startswith("mean,1.000000,0.500000,0.750000")
    assert json_path.exists()


def test_evaluate_compares_grids_as_read_whatever_the_storage_order(tmp_path: Path) -> None:
    """A prediction saved R-A-S over the truth's voxels (stored I-P-L) scores voxel for voxel; shifted
    by a slice it is refused."""
    import nibabel as nib

    affine = kits_affine((2.0, 1.0, 1.0))
    truth = np.zeros((3, 5, 6), np.uint8)
    truth[0:2, 1:4, 0:3] = 1
    truth[1, 2, 1] = 2
    save_nifti(tmp_path / "gt" / "case_00000.nii.gz", truth, affine, np.uint8)
    without_tumor = nib.Nifti1Image((truth > 0).astype(np.uint8), affine)
    (tmp_path / "pred").mkdir()
    nib.save(nib.as_closest_canonical(without_tumor), tmp_path / "pred" / "case_00000.nii.gz")
    scores = evaluate_folders(tmp_path / "pred", tmp_path / "gt").per_case["case_00000"]
    assert (scores["kidney_tumor_dice"], scores["tumor_dice"]) == (1.0, 0.0)
    shifted = affine.copy()
    shifted[2, 3] -= 2.0  # one slice further
    save_nifti(tmp_path / "pred" / "case_00000.nii.gz", truth, shifted, np.uint8)
    with pytest.raises(NephrosegInputError, match=r"case_00000.nii.gz: label affine differs .* 2 mm"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")


def test_evaluate_refuses_missing_predictions(tmp_path: Path) -> None:
    affine = kits_affine((2.0, 1.0, 1.0))
    for i in range(2):
        save_nifti(tmp_path / "gt" / f"case_{i:05d}.nii.gz", np.zeros((2, 3, 3), np.uint8), affine)
    save_nifti(tmp_path / "pred" / "case_00000.nii.gz", np.zeros((2, 3, 3), np.uint8), affine)
    with pytest.raises(NephrosegInputError, match=r"no prediction for 1 ground-truth case.*case_00001"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    assert evaluate_folders(tmp_path / "pred", tmp_path / "gt", allow_missing=True).composite_dice == 1.0


def test_evaluate_two_files_of_any_names_through_the_cli(tmp_path: Path, capsys) -> None:
    """Two files named on the command line are compared with each other; the scores go beside the
    prediction (its folder), not into the file."""
    from test_cli import run_cli

    affine = kits_affine((2.0, 1.0, 1.0))
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[0, :2, :2] = 1
    truth[1, :2, 0] = 2
    prediction = truth.copy()
    prediction[1, 1, 0] = 1  # one of the two tumor voxels called kidney: tumor Dice 2·1/(1+2)
    save_nifti(tmp_path / "reader2.nii.gz", truth, affine, np.uint8)
    save_nifti(tmp_path / "preds" / "my scan.nii.gz", prediction, affine, np.uint8)
    args = [
        "evaluate",
        "--pred",
        str(tmp_path / "preds" / "my scan.nii.gz"),
        "--gt",
        str(tmp_path / "reader2.nii.gz"),
    ]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "kidney_tumor_dice=1.0000 tumor_dice=0.6667" in out
    scores = json.loads((tmp_path / "preds" / "metrics.json").read_text())
    assert scores["mean"]["tumor_dice"] == pytest.approx(2 / 3)


def test_evaluate_replaces_its_own_results_but_not_a_users_files(tmp_path: Path, capsys) -> None:
    """metrics.csv / metrics.json of an earlier evaluation are replaced; files of those names that
    evaluate did not write (the user's own table in the chosen folder) are refused before scoring."""
    from test_cli import run_cli

    affine = kits_affine((2.0, 1.0, 1.0))
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[0, :2, :2] = 1
    save_nifti(tmp_path / "gt" / "case_00000.nii.gz", truth, affine, np.uint8)
    save_nifti(tmp_path / "pred" / "case_00000.nii.gz", truth, affine, np.uint8)
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--no-progress"]
    assert run_cli(args, capsys)[0] == 0
    assert run_cli(args, capsys)[0] == 0  # its own results: replaced
    for name, theirs in (("metrics.csv", "patient,score\n"), ("metrics.json", "[]\n")):
        (tmp_path / "mine").mkdir(exist_ok=True)
        (tmp_path / "mine" / name).write_text(theirs)
        code, _, err = run_cli([*args, "--out", str(tmp_path / "mine")], capsys)
        assert (
            code == 2
            and f"{tmp_path / 'mine' / name}: exists and was not written by nephroseg evaluate" in err
        )
        assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == [name]
        assert (tmp_path / "mine" / name).read_text() == theirs
        (tmp_path / "mine" / name).unlink()
