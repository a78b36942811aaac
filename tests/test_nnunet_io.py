"""export-nnunet / import-nnunet: an nnU-Net v2 raw dataset that round-trips byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import blob_case, files_under, kits_affine, save_nifti
from test_cli import run_cli


def test_export_import_round_trip_is_byte_identical(kits_dir: Path, tmp_path: Path, capsys) -> None:
    image, _ = blob_case(seed=9)
    save_nifti(
        kits_dir / "case_00007" / "imaging.nii.gz", image, kits_affine((3, 1, 1)), np.int16
    )  # unlabelled
    raw = tmp_path / "raw"
    code, _, err = run_cli(
        ["export-nnunet", "--data", str(kits_dir), "--out", str(raw), "--dataset-id", "7"], capsys
    )
    assert code == 0, err
    dataset = raw / "Dataset007_KiTS19Synth"
    assert files_under(dataset) == [
        "dataset.json",
        "imagesTr/case_00000_0000.nii.gz",
        "imagesTr/case_00001_0000.nii.gz",
        "imagesTr/case_00002_0000.nii.gz",
        "imagesTs/case_00007_0000.nii.gz",
        "labelsTr/case_00000.nii.gz",
        "labelsTr/case_00001.nii.gz",
        "labelsTr/case_00002.nii.gz",
    ]
    description = json.loads((dataset / "dataset.json").read_text())
    assert description["channel_names"] == {"0": "CT"}
    assert description["labels"] == {"background": 0, "kidney": 1, "tumor": 2}
    assert description["numTraining"] == 3 and description["file_ending"] == ".nii.gz"

    back = tmp_path / "back"
    code, _, err = run_cli(["import-nnunet", "--dataset", str(dataset), "--out", str(back)], capsys)
    assert code == 0, err
    for case in ("case_00000", "case_00001", "case_00002", "case_00007"):
        for name in ("imaging.nii.gz", "segmentation.nii.gz"):
            original = kits_dir / case / name
            if original.exists():
                assert (back / case / name).read_bytes() == original.read_bytes()
            else:
                assert not (back / case / name).exists()


def test_export_refuses_an_existing_dataset_and_import_a_non_dataset(
    kits_dir: Path, tmp_path: Path, capsys
) -> None:
    raw = tmp_path / "raw"
    args = ["export-nnunet", "--data", str(kits_dir), "--out", str(raw)]
    assert run_cli(args, capsys)[0] == 0
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "exists; pass --overwrite" in err
    assert run_cli([*args, "--overwrite"], capsys)[0] == 0
    code, _, err = run_cli([*args, "--name", "bad name"], capsys)
    assert code == 2 and "letters and digits" in err
    code, _, err = run_cli(
        ["import-nnunet", "--dataset", str(kits_dir), "--out", str(tmp_path / "x")], capsys
    )
    assert code == 2 and "not an nnU-Net raw dataset" in err and not (tmp_path / "x").exists()
    dataset = raw / "Dataset220_KiTS19Synth"
    for member in (dataset / "imagesTr").iterdir():
        member.unlink()
    (dataset / "imagesTr").rmdir()
    code, _, err = run_cli(["import-nnunet", "--dataset", str(dataset), "--out", str(tmp_path / "y")], capsys)
    assert code == 2 and "no imagesTr folder" in err and not (tmp_path / "y").exists()


def test_export_writes_a_label_stored_otherwise_as_its_image_is_stored(
    kits_dir: Path, tmp_path: Path, capsys
) -> None:
    """nnU-Net compares arrays as stored: a label saved R-A-S over its I-P-L image's voxels is written
    in the image's storage (same shape, affine and voxels as the image sees them); the others are
    untouched copies."""
    import nibabel as nib

    label_path = kits_dir / "case_00001" / "segmentation.nii.gz"
    as_stored = np.asarray(nib.load(label_path).dataobj)
    nib.save(nib.as_closest_canonical(nib.load(label_path)), label_path)
    raw = tmp_path / "raw"
    assert run_cli(["export-nnunet", "--data", str(kits_dir), "--out", str(raw)], capsys)[0] == 0
    dataset = raw / "Dataset220_KiTS19Synth"
    image = nib.load(dataset / "imagesTr" / "case_00001_0000.nii.gz")
    label = nib.load(dataset / "labelsTr" / "case_00001.nii.gz")
    assert label.shape == image.shape and np.array_equal(label.affine, image.affine)
    assert np.array_equal(np.asarray(label.dataobj), as_stored)
    assert (dataset / "labelsTr" / "case_00000.nii.gz").read_bytes() == (
        kits_dir / "case_00000" / "segmentation.nii.gz"
    ).read_bytes()


def test_export_refuses_a_label_on_another_grid_and_keeps_the_old_dataset(
    kits_dir: Path, tmp_path: Path, capsys
) -> None:
    import nibabel as nib

    raw = tmp_path / "raw"
    args = ["export-nnunet", "--data", str(kits_dir), "--out", str(raw)]
    assert run_cli(args, capsys)[0] == 0
    before = {name: (raw / name).read_bytes() for name in files_under(raw)}
    label_path = kits_dir / "case_00002" / "segmentation.nii.gz"
    stored = nib.load(label_path)
    moved = stored.affine.copy()
    moved[0, 3] += 5.0
    nib.save(nib.Nifti1Image(np.asarray(stored.dataobj), moved), tmp_path / "moved.nii.gz")
    (tmp_path / "moved.nii.gz").replace(label_path)  # a new file: the export's hard link keeps the old
    code, _, err = run_cli([*args, "--overwrite"], capsys)
    assert code == 2 and f"{label_path}: label affine differs" in err
    assert {name: (raw / name).read_bytes() for name in files_under(raw)} == before
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset220_KiTS19Synth"]
