"""KiTS21/KiTS23 datasets imported into the KiTS19 task: cysts (3) become kidney (1), everything else
is kept to the voxel, imaging is untouched, and the result trains like any KiTS19 folder."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import blob_case, files_under, kits_affine, save_nifti
from test_cli import run_cli

from nephroseg.errors import NephrosegInputWarning
from nephroseg.io import labelled_cases, read_volume


def kits23_folder(root: Path) -> np.ndarray:
    """case_00000 as KiTS23 (segmentation.nii.gz, a cyst), case_00001 as KiTS21 (the majority vote
    file), case_00002 a test case without labels. Returns case_00000's label map as stored."""
    affine = kits_affine((3.0, 1.5, 1.5))
    image, label = blob_case(seed=0)
    kits23 = label.copy()
    kits23[2:4, 10:14, 30:34] = 3  # a cyst in the background
    kits23[5, 20, 14] = 3  # and one voxel inside the kidney
    save_nifti(root / "case_00000" / "imaging.nii.gz", image, affine, np.int16)
    save_nifti(root / "case_00000" / "segmentation.nii.gz", kits23, affine, np.uint8)
    image1, label1 = blob_case(seed=1)
    save_nifti(root / "case_00001" / "imaging.nii.gz", image1, affine, np.int16)
    save_nifti(root / "case_00001" / "aggregated_MAJ_seg.nii.gz", label1, affine, np.uint8)
    save_nifti(root / "case_00002" / "imaging.nii.gz", image1, affine, np.int16)
    return kits23


def test_import_kits23_relabels_cysts_and_keeps_the_rest(tmp_path: Path, capsys) -> None:
    kits23 = kits23_folder(tmp_path / "kits23")
    code, out, err = run_cli(
        ["import-kits", "--data", str(tmp_path / "kits23"), "-o", str(tmp_path / "k19")], capsys
    )
    assert code == 0, err
    cysts = int(np.count_nonzero(kits23 == 3))
    assert (
        f"wrote 3 cases to {tmp_path / 'k19'} (2 labelled; {cysts} cyst voxels relabelled as kidney)" in out
    )
    written = np.asarray(nib.load(tmp_path / "k19" / "case_00000" / "segmentation.nii.gz").dataobj)
    np.testing.assert_array_equal(written, np.where(kits23 == 3, 1, kits23))
    source = nib.load(tmp_path / "kits23" / "case_00000" / "segmentation.nii.gz")
    np.testing.assert_array_equal(
        nib.load(tmp_path / "k19" / "case_00000" / "segmentation.nii.gz").affine, source.affine
    )
    for case in ("case_00000", "case_00001", "case_00002"):
        name = "imaging.nii.gz"
        assert (tmp_path / "k19" / case / name).read_bytes() == (
            tmp_path / "kits23" / case / name
        ).read_bytes()
    kits21 = read_volume(tmp_path / "kits23" / "case_00001" / "aggregated_MAJ_seg.nii.gz", label=True).array
    np.testing.assert_array_equal(
        read_volume(tmp_path / "k19" / "case_00001" / "segmentation.nii.gz", label=True).array, kits21
    )
    assert not (tmp_path / "k19" / "case_00002" / "segmentation.nii.gz").exists()
    with pytest.warns(NephrosegInputWarning, match="case_00002"):  # the test case, left out of training
        assert [c.case_id for c in labelled_cases(tmp_path / "k19")] == ["case_00000", "case_00001"]


def test_import_kits23_refuses_other_labels_and_existing_outputs(tmp_path: Path, capsys) -> None:
    kits23_folder(tmp_path / "kits23")
    args = ["import-kits", "--data", str(tmp_path / "kits23"), "-o", str(tmp_path / "k19")]
    assert run_cli(args, capsys)[0] == 0
    before = files_under(tmp_path / "k19")
    code, _, err = run_cli(args, capsys)
    assert (
        code == 2
        and "exists; pass --resume to keep the cases written, --overwrite to rewrite them" in err
        and files_under(tmp_path / "k19") == before
    )
    assert run_cli([*args, "--overwrite"], capsys)[0] == 0
    stray = np.zeros((12, 40, 48), np.uint8)
    stray[0, 0, 0] = 4
    save_nifti(
        tmp_path / "bad" / "case_00009" / "imaging.nii.gz",
        stray.astype(np.int16),
        kits_affine((3.0, 1.5, 1.5)),
    )
    save_nifti(tmp_path / "bad" / "case_00009" / "segmentation.nii.gz", stray, kits_affine((3.0, 1.5, 1.5)))
    code, _, err = run_cli(
        ["import-kits", "--data", str(tmp_path / "bad"), "-o", str(tmp_path / "k19b")], capsys
    )
    assert code == 2 and "segmentation.nii.gz: label values outside {0, 1, 2, 3}: 4" in err
    assert not (tmp_path / "k19b").exists()  # checked before anything is written: no half case


def test_import_kits23_resumes_an_interrupted_run(tmp_path: Path, capsys) -> None:
    """An import stopped after case_00000's imaging was linked but before its label map was written:
    --resume writes that case again and keeps the two written whole (the same inodes)."""
    kits23 = kits23_folder(tmp_path / "kits23")
    args = ["import-kits", "--data", str(tmp_path / "kits23"), "-o", str(tmp_path / "k19"), "--no-progress"]
    assert run_cli(args, capsys)[0] == 0
    out = tmp_path / "k19"
    (out / "case_00000" / "segmentation.nii.gz").unlink()  # the interruption
    inodes = {p: p.stat().st_ino for p in out.rglob("*.nii.gz") if "case_00000" not in str(p)}
    code, text, err = run_cli([*args, "--resume"], capsys)
    assert code == 0, err
    cysts = int(np.count_nonzero(kits23 == 3))
    assert f"(2 labelled; {cysts} cyst voxels relabelled as kidney; 2 kept from an earlier run)" in text
    written = np.asarray(nib.load(out / "case_00000" / "segmentation.nii.gz").dataobj)
    np.testing.assert_array_equal(written, np.where(kits23 == 3, 1, kits23))
    assert {p: p.stat().st_ino for p in inodes} == inodes
    code, _, err = run_cli([*args, "--resume", "--overwrite"], capsys)
    assert code == 2 and "--resume: keeps the cases written, --overwrite rewrites them" in err
