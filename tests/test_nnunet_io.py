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
