"""A corpus of malformed inputs and simulated faults, each run through the command line.

Every case must end in one line ``error: FILE: problem`` on stderr, exit status 2, and an output
folder that holds nothing new, with the files the user had there byte-identical. The table in
docs/robustness.md lists these cases with the test that proves each.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from conftest import blob_case, kits_affine, save_nifti
from test_cli import run_cli

from nephroseg.errors import NephrosegInputError
from nephroseg.inference.resume import RECORD_NAME
from nephroseg.io import read_volume
from nephroseg.recipe import RECIPES_DIR

AFFINE = kits_affine((3.0, 1.5, 1.5))
TINY = ["--recipe", "resunet25d", "--profile", "tiny", "--device", "cpu", "--no-progress"]


def evaluate_args(folder: Path) -> list[str]:
    return ["evaluate", "--pred", str(folder / "pred"), "--gt", str(folder / "gt")]


def assert_user_error(code: int, err: str, *fragments: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden temporary files included) with its bytes."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def user_output(tmp_path: Path) -> Path:
    """An output folder already holding the user's own files, which must survive every failure."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's notes\n")
    save_nifti(out / "case_09999.nii.gz", np.ones((2, 3, 4), np.uint8), AFFINE)
    return out


# ---- the corpus of bad image files ------------------------------------------------------------------


def _ct(shape=(12, 40, 48)) -> np.ndarray:
    return blob_case(shape)[0]


def _truncated_gzip(path: Path) -> None:
    save_nifti(path, np.random.default_rng(0).normal(size=(16, 64, 64)), AFFINE, np.float32)
    path.write_bytes(path.read_bytes()[:3000])


def _corrupt_gzip(path: Path) -> None:
    """Bytes zeroed mid-stream: the stream still inflates, to wrong voxels; only the CRC shows it."""
    save_nifti(path, np.random.default_rng(0).normal(size=(16, 64, 64)), AFFINE, np.float32)
    payload = bytearray(path.read_bytes())
    middle = len(payload) // 2
    payload[middle : middle + 200] = bytes(200)
    path.write_bytes(bytes(payload))


def _truncated_nii(path: Path) -> None:
    save_nifti(path, _ct(), AFFINE, np.int16)
    path.write_bytes(path.read_bytes()[:5000])


def _truncated_header(path: Path) -> None:
    save_nifti(path, _ct(), AFFINE, np.int16)
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:200]))  # header cut short


def _png_renamed(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)


def _text_renamed(path: Path) -> None:
    path.write_text("patient list\nname,age\n" * 40)


def _gzip_of_text(path: Path) -> None:
    path.write_bytes(gzip.compress(b"not an image at all\n" * 40))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _volume_2d(path: Path) -> None:
    save_nifti(path, _ct()[0], AFFINE, np.int16)


def _volume_4d(path: Path) -> None:
    save_nifti(path, np.stack([_ct(), _ct()], axis=-1), AFFINE, np.int16)


def _zero_sized(path: Path) -> None:
    save_nifti(path, np.zeros((12, 0, 48), np.int16), AFFINE)


def _nan_voxels(path: Path) -> None:
    data = _ct().astype(np.float32)
    data[3, 10, 10:13] = np.nan
    save_nifti(path, data, AFFINE)


def _inf_voxels(path: Path) -> None:
    data = _ct().astype(np.float32)
    data[3, 10, 10], data[4, 4, 4] = np.inf, -np.inf
    save_nifti(path, data, AFFINE)


def _zero_spacing_sform(path: Path) -> None:
    image = nib.Nifti1Image(_ct(), AFFINE)
    image.header.set_qform(None, code=0)
    image.header["srow_x"] = [0, 0, 0, 0]  # the sform now maps every column to one plane
    image.update_header = lambda: None  # keep nibabel from re-deriving the header on save
    nib.save(image, path)


def _zero_spacing_pixdim(path: Path) -> None:
    """No sform, a qform and pixdim 0: nibabel would quietly take 1 mm."""
    image = nib.Nifti1Image(_ct(), None)
    image.header.set_qform(np.diag([1.5, 1.5, 3.0, 1.0]), code=1)
    image.header.set_sform(None, code=0)
    image.header["pixdim"][1:4] = 0
    image.update_header = lambda: None
    nib.save(image, path)


def _huge_spacing(path: Path) -> None:
    save_nifti(path, _ct(), kits_affine((1e6, 1.5, 1.5)), np.int16)


def _tiny_spacing(path: Path) -> None:
    save_nifti(path, _ct(), kits_affine((3.0, 1e-5, 1e-5)), np.int16)


def _spacing_in_metres(path: Path) -> None:
    save_nifti(path, _ct(), kits_affine((0.003, 0.0008, 0.0008)), np.int16)


def _nan_affine(path: Path) -> None:
    affine = AFFINE.copy()
    affine[0, 3] = np.nan
    image = nib.Nifti1Image(_ct(), affine)
    image.header.set_qform(None, code=0)
    image.update_header = lambda: None
    nib.save(image, path)


BAD_IMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated_gzip": (_truncated_gzip, "truncated or corrupt"),
    "corrupt_gzip": (_corrupt_gzip, "truncated or corrupt"),
    "truncated_nii": (_truncated_nii, "truncated or corrupt"),
    "truncated_header": (_truncated_header, "not a readable NIfTI"),
    "png_renamed": (_png_renamed, "not a readable NIfTI"),
    "text_renamed": (_text_renamed, "not a readable NIfTI"),
    "gzip_of_text": (_gzip_of_text, "not a readable NIfTI"),
    "empty_file": (_empty, "file is empty (0 bytes)"),
    "volume_2d": (_volume_2d, "is 2D with shape (40, 48), expected a 3D volume"),
    "volume_4d": (_volume_4d, "is 4D with shape (12, 40, 48, 2), expected a 3D volume"),
    "zero_sized_axis": (_zero_sized, "has a zero-length axis"),
    "nan_voxels": (_nan_voxels, "contains 3 NaN and 0 infinite voxels"),
    "inf_voxels": (_inf_voxels, "contains 0 NaN and 2 infinite voxels"),
    "zero_spacing_sform": (_zero_spacing_sform, "has a zero axis"),
    "zero_spacing_pixdim": (_zero_spacing_pixdim, "voxel spacing (pixdim) (0.0, 0.0, 0.0) has a zero axis"),
    "spacing_1e6_mm": (_huge_spacing, "outside the plausible range 0.01 to 100 mm"),
    "spacing_1e-5_mm": (_tiny_spacing, "outside the plausible range 0.01 to 100 mm"),
    "spacing_in_metres": (_spacing_in_metres, "outside the plausible range 0.01 to 100 mm"),
    "nan_affine": (_nan_affine, "affine contains NaN or Inf"),
}


def _name(case: str) -> str:
    return "bad.nii" if case == "truncated_nii" else "bad.nii.gz"


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_predict_refuses_malformed_image(
    case: str, trained_run, tmp_path: Path, user_output: Path, capsys
) -> None:
    _, run = trained_run
    build, fragment = BAD_IMAGES[case]
    source = tmp_path / "in" / _name(case)
    source.parent.mkdir()
    build(source)
    before = snapshot(user_output)
    code, _, err = run_cli(
        ["predict", "-i", str(source), "-o", str(user_output), "-m", str(run), "--no-progress"], capsys
    )
    assert_user_error(code, err, f"error: {source}: ", fragment)
    assert snapshot(user_output) == before


@pytest.mark.parametrize("case", ["truncated_gzip", "corrupt_gzip", "png_renamed", "nan_voxels", "volume_4d"])
@pytest.mark.parametrize("side", ["pred", "gt"])
def test_evaluate_refuses_malformed_label_file(
    case: str, side: str, trained_run, tmp_path: Path, capsys
) -> None:
    folders = {"pred": tmp_path / "pred", "gt": tmp_path / "gt"}
    _, label = blob_case()
    for folder in folders.values():
        save_nifti(folder / "case_00000.nii.gz", label, AFFINE, np.uint8)
    bad = folders[side] / "case_00000.nii.gz"
    bad.unlink()
    BAD_IMAGES[case][0](bad)
    before = snapshot(tmp_path)
    code, _, err = run_cli(["evaluate", "--pred", str(folders["pred"]), "--gt", str(folders["gt"])], capsys)
    assert_user_error(code, err, f"error: {bad}: ", BAD_IMAGES[case][1])
    assert snapshot(tmp_path) == before  # no metrics.csv / metrics.json


# ---- labels: stray values, grids that disagree -----------------------------------------------------


def _evaluate_pair(tmp_path: Path, pred_label: np.ndarray, pred_affine: np.ndarray, capsys):
    _, truth = blob_case()
    save_nifti(tmp_path / "gt" / "case_00000.nii.gz", truth, AFFINE, np.uint8)
    pred = save_nifti(tmp_path / "pred" / "case_00000.nii.gz", pred_label, pred_affine, np.uint8)
    before = snapshot(tmp_path)
    code, out, err = run_cli(evaluate_args(tmp_path), capsys)
    return pred, before, code, out, err


@pytest.mark.parametrize("stray", [3, 255])
def test_evaluate_refuses_stray_label_values(stray: int, tmp_path: Path, capsys) -> None:
    _, label = blob_case()
    label[0, 0, :2] = stray
    pred, before, code, _, err = _evaluate_pair(tmp_path, label, AFFINE, capsys)
    assert_user_error(code, err, f"error: {pred}: ", f"label values outside {{0, 1, 2}}: {stray}")
    assert snapshot(tmp_path) == before


def test_evaluate_refuses_shape_mismatch(tmp_path: Path, capsys) -> None:
    _, label = blob_case()
    pred, before, code, _, err = _evaluate_pair(tmp_path, label[:, :, :-1], AFFINE, capsys)
    assert_user_error(
        code, err, f"error: {pred}: ", "label shape (12, 40, 47) differs from image shape (12, 40, 48)"
    )
    assert snapshot(tmp_path) == before


def test_evaluate_refuses_affine_beyond_tolerance(tmp_path: Path, capsys) -> None:
    """The tolerance is AFFINE_TOLERANCE_MM = 1e-3 mm (io/kits.py) on every affine entry."""
    _, label = blob_case()
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.01
    pred, before, code, _, err = _evaluate_pair(tmp_path, label, shifted, capsys)
    assert_user_error(code, err, f"error: {pred}: ", "by up to 0.01 mm (tolerance 0.001 mm)")
    assert snapshot(tmp_path) == before


def test_evaluate_accepts_affine_within_tolerance(tmp_path: Path, capsys) -> None:
    _, label = blob_case()
    shifted = AFFINE.copy()
    shifted[0, 3] += 5e-4
    _, _, code, out, err = _evaluate_pair(tmp_path, label, shifted, capsys)
    assert code == 0 and "composite_dice=1.0000" in out and err == ""


def test_evaluate_names_axes_a_header_orients_otherwise(tmp_path: Path, capsys) -> None:
    """The same voxels stored alike but a header without orientation (read L-A-S): the message names
    the stored shapes and both headers' axes, not the shapes in the canonical order alone."""
    _, label = blob_case()
    bare = nib.Nifti1Image(label, None)
    bare.header["qform_code"], bare.header["sform_code"] = 0, 0
    pred, before, code, _, err = _evaluate_pair(tmp_path, label, AFFINE, capsys)
    nib.save(bare, pred)
    before = snapshot(tmp_path)
    code, _, err = run_cli(evaluate_args(tmp_path), capsys)
    assert_user_error(
        code,
        err,
        f"error: {pred}: label stored (12, 40, 48) with axes L-A-S reads as (48, 40, 12), the image",
        "stored (12, 40, 48) with axes I-P-L as (12, 40, 48): their headers orient the voxels differently",
        "(a header without orientation reads as L-A-S)",
    )
    assert snapshot(tmp_path) == before


def test_evaluate_out_that_is_a_file(tmp_path: Path, capsys) -> None:
    _, label = blob_case()
    _evaluate_pair(tmp_path, label, AFFINE, capsys)
    (tmp_path / "mine.txt").write_text("the user's\n")
    before = snapshot(tmp_path)
    code, _, err = run_cli([*evaluate_args(tmp_path), "--out", str(tmp_path / "mine.txt")], capsys)
    assert_user_error(code, err, f"error: {tmp_path / 'mine.txt'}: exists and is not a folder")
    assert snapshot(tmp_path) == before


def test_evaluate_writes_an_undefined_score_as_json_null(tmp_path: Path, capsys) -> None:
    """Both maps empty: the slice mean IoU over labelled slices is undefined (NaN in metrics.csv),
    null in metrics.json, which strict parsers then read."""
    empty = np.zeros((12, 40, 48), np.uint8)
    _, _, code, _, _ = _evaluate_pair(tmp_path, empty, AFFINE, capsys)
    assert code == 0
    save_nifti(tmp_path / "gt" / "case_00000.nii.gz", empty, AFFINE, np.uint8)
    code, _, _ = run_cli(evaluate_args(tmp_path), capsys)
    assert code == 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in metrics.json")

    scores = json.loads((tmp_path / "pred" / "metrics.json").read_text(), parse_constant=refuse)
    assert scores["cases"]["case_00000"]["slice_mean_iou_nonempty"] is None
    assert scores["cases"]["case_00000"]["composite_dice"] == 1.0
    assert (tmp_path / "pred" / "metrics.csv").read_text().splitlines()[1].endswith(",nan")


def test_label_errors_say_what_was_given(tmp_path: Path) -> None:
    """A CT given as a label map, or a folder: the message says so (no cyst hint for a CT that
    happens to hold the value 3)."""
    ct = _ct()
    ct[0, 0, 0] = 3
    with pytest.raises(
        NephrosegInputError, match=r"outside \{0, 1, 2\}: .*\(an image given where a label map"
    ):
        read_volume(save_nifti(tmp_path / "ct.nii.gz", ct, AFFINE), label=True)
    with pytest.raises(NephrosegInputError, match="is a folder; a label map is one file"):
        read_volume(tmp_path, label=True)


def _cohort(root: Path, change: str) -> Path:
    """Three labelled cases; case_00002 carries the fault named by ``change``."""
    for i in range(3):
        image, label = blob_case(seed=i)
        image_affine = label_affine = AFFINE
        image = image.astype(np.float32)
        if i == 2:
            if change == "stray_255":
                label[0, 0, 0] = 255
            elif change == "stray_3":
                label[5, 20, 20] = 3
            elif change == "shape":
                label = label[:-1]
            elif change == "affine":
                label_affine = AFFINE.copy()
                label_affine[1, 3] += 0.5
            elif change == "nan_image":
                image[1, 1, 1] = np.nan
            elif change == "truncated_label":
                pass
        save_nifti(root / f"case_{i:05d}" / "imaging.nii.gz", image, image_affine, np.float32)
        seg = save_nifti(root / f"case_{i:05d}" / "segmentation.nii.gz", label, label_affine, np.uint8)
        if i == 2 and change == "truncated_label":
            seg.write_bytes(seg.read_bytes()[:-40])
    return root


TRAIN_FAULTS = {
    "stray_255": ("segmentation.nii.gz", "label values outside {0, 1, 2}: 255"),
    "stray_3": (
        "segmentation.nii.gz",
        "label values outside {0, 1, 2}: 3 (KiTS21/23 label cysts 3; the KiTS19",
    ),
    "shape": ("segmentation.nii.gz", "label shape (11, 40, 48) differs from image shape (12, 40, 48)"),
    "affine": ("segmentation.nii.gz", "(tolerance 0.001 mm)"),
    "nan_image": ("imaging.nii.gz", "contains 1 NaN"),
    "truncated_label": ("segmentation.nii.gz", "truncated or corrupt"),
}


@pytest.mark.parametrize("change", sorted(TRAIN_FAULTS))
def test_train_refuses_bad_case_and_leaves_no_run(change: str, tmp_path: Path, capsys) -> None:
    data = _cohort(tmp_path / "kits", change)
    member, fragment = TRAIN_FAULTS[change]
    before = snapshot(data)
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--data", str(data), "--out", str(run), *TINY], capsys)
    assert_user_error(code, err, f"error: {data / 'case_00002' / member}: ", fragment)
    assert not run.exists() and snapshot(data) == before


# ---- MR-like intensities: a warning, and the prediction is still made -----------------------------


@pytest.mark.parametrize(
    "kind,fragment",
    [("mr", "have no negative value"), ("normalized", "reach no soft tissue above 100 HU")],
)
def test_predict_warns_on_intensities_unlike_ct(
    kind: str, fragment: str, trained_run, tmp_path: Path, capsys
) -> None:
    _, run = trained_run
    rng = np.random.default_rng(1)
    if kind == "mr":
        data = rng.integers(0, 2500, size=(12, 40, 48)).astype(np.uint16)  # T2-like, no negatives
    else:
        data = rng.normal(0, 1, size=(12, 40, 48)).astype(np.float32)  # z-scored intensities
    source = save_nifti(tmp_path / "mr.nii.gz", data, AFFINE)
    code, out, err = run_cli(
        ["predict", "-i", str(source), "-o", str(tmp_path / "o"), "-m", str(run), "--no-progress"], capsys
    )
    assert code == 0 and "wrote 1 segmentation(s)" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {source}: ") and fragment in lines[0]
    assert nib.load(tmp_path / "o" / "mr.nii.gz").shape == data.shape


def test_ct_raises_no_warning(trained_run, tmp_path: Path, capsys) -> None:
    data, run = trained_run
    source = data / "case_00000" / "imaging.nii.gz"
    code, _, err = run_cli(
        ["predict", "-i", str(source), "-o", str(tmp_path / "o.nii.gz"), "-m", str(run), "--no-progress"],
        capsys,
    )
    assert code == 0 and err == ""


def test_predict_warns_on_a_header_without_orientation(trained_run, tmp_path: Path, capsys) -> None:
    """qform_code and sform_code 0 (an ANALYZE conversion): nibabel's default axes are used, with a warning
    naming them; the labels keep the source's header, so they overlay the scan wherever it is opened."""
    data, run = trained_run
    scan = nib.load(data / "case_00000" / "imaging.nii.gz")
    bare = nib.Nifti1Image(np.asanyarray(scan.dataobj), None)
    bare.header.set_zooms(scan.header.get_zooms())
    bare.header["qform_code"], bare.header["sform_code"] = 0, 0
    source = tmp_path / "bare.nii.gz"
    nib.save(bare, source)
    code, out, err = run_cli(
        ["predict", "-i", str(source), "-o", str(tmp_path / "o.nii.gz"), "-m", str(run), "--no-progress"],
        capsys,
    )
    assert code == 0 and "wrote 1 segmentation(s)" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {source}: the header states no orientation")
    assert "read as L-A-S" in lines[0]
    written = nib.load(tmp_path / "o.nii.gz")
    assert written.shape == bare.shape and np.array_equal(written.affine, nib.load(source).affine)
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (0, 0)


# ---- the output: exists, unwritable, disk full ------------------------------------------------------


def _predict_one(trained_run, target: Path, capsys, *extra: str) -> tuple[Path, int, str, str]:
    data, run = trained_run
    source = data / "case_00001" / "imaging.nii.gz"
    args = ["predict", "-i", str(source), "-o", str(target), "-m", str(run), "--no-progress", *extra]
    return (source, *run_cli(args, capsys))


def test_output_exists_refused_without_overwrite(trained_run, user_output: Path, capsys) -> None:
    target = user_output / "case_09999.nii.gz"
    before = snapshot(user_output)
    _, code, _, err = _predict_one(trained_run, target, capsys)
    assert_user_error(code, err, f"error: {target}: ", "output exists", "--overwrite")
    assert snapshot(user_output) == before


def test_overwrite_replaces_atomically(trained_run, user_output: Path, capsys) -> None:
    target = user_output / "case_09999.nii.gz"
    source, code, _, _ = _predict_one(trained_run, target, capsys, "--overwrite")
    assert code == 0
    assert nib.load(target).shape == nib.load(source).shape
    assert sorted(snapshot(user_output)) == ["case_09999.nii.gz", "notes.txt"]  # no temporary left


def test_overwrite_interrupted_keeps_the_old_file(
    trained_run, user_output: Path, capsys, monkeypatch
) -> None:
    target = user_output / "case_09999.nii.gz"
    before = snapshot(user_output)

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    _, code, _, err = _predict_one(trained_run, target, capsys, "--overwrite")
    assert_user_error(code, err, f"error: {target}: ", "no space left on the device")
    assert snapshot(user_output) == before


def test_full_disk_at_rename_leaves_no_file(trained_run, user_output: Path, capsys, monkeypatch) -> None:
    target = user_output / "case_00001.nii.gz"
    before = snapshot(user_output)
    monkeypatch.setattr(os, "replace", lambda *_: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    _, code, _, err = _predict_one(trained_run, target, capsys)
    assert_user_error(code, err, f"error: {target}: ", "cannot write: no space left on the device")
    assert not target.exists() and snapshot(user_output) == before


def test_full_disk_mid_write_leaves_no_file(trained_run, user_output: Path, capsys, monkeypatch) -> None:
    """The disk fills while the file is half written: the partial temporary file is removed."""
    target = user_output / "case_00001.nii.gz"
    before = snapshot(user_output)

    def half_write(image, path):
        Path(path).write_bytes(b"\x1f\x8b partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nib, "save", half_write)
    _, code, _, err = _predict_one(trained_run, target, capsys)
    assert_user_error(code, err, f"error: {target}: ", "no space left on the device")
    assert not target.exists() and snapshot(user_output) == before


def test_full_disk_on_evaluate_keeps_previous_metrics(tmp_path: Path, capsys, monkeypatch) -> None:
    _, label = blob_case()
    for side in ("pred", "gt"):
        save_nifti(tmp_path / side / "case_00000.nii.gz", label, AFFINE, np.uint8)
    (tmp_path / "pred" / "metrics.csv").write_text(
        "case_id,kidney_tumor_dice,tumor_dice\nmean,0.5,0.5\n"
    )  # earlier
    before = snapshot(tmp_path)
    monkeypatch.setattr(os, "replace", lambda *_: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    code, _, err = run_cli(evaluate_args(tmp_path), capsys)
    assert_user_error(code, err, "metrics.csv: cannot write: no space left on the device")
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unwritable_output_folder(trained_run, user_output: Path, capsys) -> None:
    before = snapshot(user_output)
    user_output.chmod(0o500)
    try:
        _, code, _, err = _predict_one(trained_run, user_output, capsys)
    finally:
        user_output.chmod(0o700)
    assert_user_error(code, err, f"error: {user_output}: ", "permission denied")
    assert snapshot(user_output) == before


def test_unwritable_output_folder_simulated(trained_run, user_output: Path, capsys, monkeypatch) -> None:
    """As root (where chmod 0o500 does not stop writes): the folder check refuses before any work."""
    before = snapshot(user_output)
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode: real_access(path, mode) and not (Path(path) == user_output and mode & os.W_OK),
    )
    _, code, _, err = _predict_one(trained_run, user_output, capsys)
    assert_user_error(code, err, f"error: {user_output}: ", "cannot write here: permission denied")
    assert snapshot(user_output) == before


def test_permission_denied_at_write_time(trained_run, user_output: Path, capsys, monkeypatch) -> None:
    """Permissions taken away after the check: the write itself fails cleanly."""
    import tempfile

    before = snapshot(user_output)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    _, code, _, err = _predict_one(trained_run, user_output, capsys)
    target = user_output / "case_00001.nii.gz"  # case_00001/imaging.nii.gz is case_00001
    assert_user_error(code, err, f"error: {target}: ", "cannot write: permission denied")
    assert snapshot(user_output) == before


# ---- recipes and checkpoints ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit,fragments",
    [
        (lambda r: r["train"].update(epochz=3), ["recipe key 'train.epochz': unknown key"]),
        (lambda r: r.update(trainer={"epochs": 3}), ["recipe key 'trainer': unknown key"]),
        (lambda r: r["train"].update(lr="fast"), ["recipe key 'train.lr'", "valid number"]),
        (lambda r: r["model"].update(in_slices=[3]), ["recipe key 'model.in_slices'", "valid integer"]),
    ],
    ids=["unknown_key", "unknown_section", "wrong_type_lr", "wrong_type_in_slices"],
)
def test_train_refuses_bad_recipe_file(edit, fragments, trained_run, tmp_path: Path, capsys) -> None:
    data, _ = trained_run
    recipe = yaml.safe_load((RECIPES_DIR / "resunet25d.yaml").read_text())
    edit(recipe)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = tmp_path / "run"
    code, _, err = run_cli(
        ["train", "--data", str(data), "--out", str(run), "--recipe", str(path), "--device", "cpu"], capsys
    )
    assert_user_error(code, err, f"error: {path}: ", *fragments)
    assert not run.exists()


def test_train_refuses_recipe_that_is_not_yaml(trained_run, tmp_path: Path, capsys) -> None:
    data, _ = trained_run
    path = tmp_path / "broken.yaml"
    path.write_text("model: {name: resunet25d\n  width: [1,\n")
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--recipe", str(path)]
    code, _, err = run_cli(args, capsys)
    assert_user_error(code, err, f"error: {path}: ", "not valid YAML")
    assert not (tmp_path / "run").exists()


def test_train_and_export_refuse_outputs_and_recipes_of_the_wrong_kind(
    trained_run, tmp_path: Path, capsys
) -> None:
    """Each was a traceback with exit 1: a recipe file that is not UTF-8 text, ``train --out`` naming a
    file, ``export-onnx --out`` naming a folder (with --overwrite)."""
    data, run = trained_run
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe garbage")
    code, _, err = run_cli(
        ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--recipe", str(binary)], capsys
    )
    assert_user_error(code, err, f"error: {binary}: not a text file in UTF-8")
    mine = tmp_path / "notes.txt"
    mine.write_text("the user's\n")
    code, _, err = run_cli(["train", "--data", str(data), "--out", str(mine), *TINY], capsys)
    assert_user_error(code, err, f"error: {mine}: exists and is not a folder")
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    code, _, err = run_cli(["export-onnx", "-m", str(run), "-o", str(folder), "--overwrite"], capsys)
    assert_user_error(code, err, f"error: {folder}: is a folder")
    assert mine.read_text() == "the user's\n" and not any(folder.iterdir()) and not (tmp_path / "r").exists()


def test_train_refuses_a_tile_size_the_network_cannot_halve(trained_run, tmp_path: Path, capsys) -> None:
    """The tiny Res-U-Net halves its tiles three times: 42 px would fail at a skip connection."""
    data, _ = trained_run
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--recipe", "resunet25d", "--profile", "tiny"]
    code, _, err = run_cli([*args, "--set", "preprocess.size=42"], capsys)
    assert_user_error(code, err, "error: preprocess.size: ", "42 is not a multiple of 8", "(e.g. 40)")
    assert not run.exists()
    code, _, err = run_cli([*args, "--set", "train.crop_size=20"], capsys)  # a training patch alike
    assert_user_error(code, err, "error: train.crop_size: ", "20 is not a multiple of 8", "(e.g. 16)")
    assert not run.exists()


def _checkpoint(kind: str, trained_run, folder: Path) -> Path:
    _, run = trained_run
    path = folder / f"{kind}.pt"
    good = (run / "checkpoints" / "last.pt").read_bytes()
    if kind == "pickled_code":
        torch.save({"format": "nephroseg.checkpoint.v1", "hook": subprocess.Popen}, path)
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("these are not weights\n")
    elif kind == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    return path


@pytest.mark.parametrize(
    "kind,fragment",
    [
        ("pickled_code", "refused: the checkpoint holds pickled objects beyond weights"),
        ("truncated", "not a readable checkpoint"),
        ("empty", "not a readable checkpoint"),
        ("text", "not a readable checkpoint"),
        ("foreign", "not a nephroseg checkpoint"),
    ],
)
def test_predict_refuses_bad_checkpoint(
    kind: str, fragment: str, trained_run, tmp_path: Path, user_output: Path, capsys
) -> None:
    data, _ = trained_run
    checkpoint = _checkpoint(kind, trained_run, tmp_path)
    before = snapshot(user_output)
    code, _, err = run_cli(
        ["predict", "-i", str(data), "-o", str(user_output), "-m", str(checkpoint), "--no-progress"], capsys
    )
    assert_user_error(code, err, f"error: {checkpoint}: ", fragment)
    assert snapshot(user_output) == before


def test_resume_refuses_truncated_last_checkpoint(trained_run, tmp_path: Path, capsys) -> None:
    data, run = trained_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    last = copy / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    before = snapshot(copy)
    code, _, err = run_cli(["train", "--data", str(data), "--out", str(copy), *TINY, "--resume"], capsys)
    assert_user_error(code, err, f"error: {last}: ", "not a readable checkpoint")
    assert snapshot(copy) == before


# ---- --max-memory -------------------------------------------------------------------------------------


def test_max_memory_refuses_a_volume_that_does_not_fit(trained_run, user_output: Path, capsys) -> None:
    before = snapshot(user_output)
    source, code, _, err = _predict_one(trained_run, user_output, capsys, "--max-memory", "64KB")
    assert_user_error(
        code,
        err,
        f"error: {source}: ",
        "needs about",
        "of it this process before",
        "more than --max-memory 64.0 KB",
    )
    assert snapshot(user_output) == before


def test_max_memory_that_fits_runs(trained_run, tmp_path: Path, capsys) -> None:
    _, code, out, _ = _predict_one(trained_run, tmp_path / "o", capsys, "--max-memory", "16GB")
    assert code == 0 and "wrote 1 segmentation(s)" in out


def test_max_memory_counts_what_the_process_holds(trained_run, tmp_path: Path, capsys, monkeypatch) -> None:
    """The limit bounds the whole process: a volume that fits beside 100 MB of process does not fit
    beside 4 GB less 1 MB of it."""
    import importlib

    predict_module = importlib.import_module("nephroseg.inference.predict")  # the module, not the function
    monkeypatch.setattr(predict_module, "resident_bytes", lambda: 4 * 1024**3 - 1024**2)
    source, code, _, err = _predict_one(trained_run, tmp_path / "o", capsys, "--max-memory", "4GB")
    assert_user_error(code, err, f"error: {source}: ", "(4.0 GB of it this process before the volume)")
    assert not (tmp_path / "o").exists()
    monkeypatch.setattr(predict_module, "resident_bytes", lambda: 100 * 1024**2)
    _, code, out, _ = _predict_one(trained_run, tmp_path / "o", capsys, "--max-memory", "4GB")
    assert code == 0 and "wrote 1 segmentation(s)" in out


def test_resident_bytes_grows_with_memory_touched() -> None:
    from nephroseg.inference.guards import resident_bytes

    before = resident_bytes()
    block = np.ones(64 * 1024**2, dtype=np.uint8)  # 64 MB, every page written
    grown = resident_bytes() - before
    assert 60 * 1024**2 <= grown <= 80 * 1024**2 and block[-1] == 1


@pytest.mark.parametrize("size", ["lots", "-1GB", "0", "4XB"])
def test_max_memory_bad_size(size: str, trained_run, tmp_path: Path, capsys) -> None:
    _, code, _, err = _predict_one(trained_run, tmp_path / "o", capsys, f"--max-memory={size}")
    assert_user_error(code, err, "error: --max-memory: ", "is not a memory size")
    assert not (tmp_path / "o").exists()


def test_parse_size_units() -> None:
    from nephroseg.inference.guards import parse_size

    assert parse_size("512MB") == 512 * 1024**2
    assert parse_size("4GB") == parse_size("4G") == parse_size("4 GiB") == 4 * 1024**3
    assert parse_size("1.5gb") == int(1.5 * 1024**3)
    assert parse_size("1000") == parse_size("1000B") == 1000


def test_peak_estimate_follows_shape_orientation_and_batch() -> None:
    from nephroseg.inference.guards import peak_bytes
    from nephroseg.io.volume import canonical_shape_and_spacing

    ras = np.diag([0.8, 0.7, 2.5, 1.0])  # stored (x, y, z) → canonical (z, y, x)
    shape, spacing = canonical_shape_and_spacing((48, 40, 12), ras)
    assert shape == (12, 40, 48) and spacing == pytest.approx((2.5, 0.7, 0.8))
    member = [(None, 16, 3, 3, 40.0)]
    small = peak_bytes(shape, spacing, member, batch_size=1)
    assert peak_bytes(shape, spacing, member, batch_size=8) > small
    assert peak_bytes(shape, spacing, member * 2, batch_size=1) > small  # an ensemble holds two views
    # Tumor against kidney across slices holds two batches' labels and margins: 18 bytes a pixel.
    across = peak_bytes(shape, spacing, member, batch_size=8, across_slices=True)
    assert across - peak_bytes(shape, spacing, member, batch_size=8) == 18 * 8 * 40 * 48
    assert small >= 12 * 40 * 48 * 12  # at least the reading phase
    # Resampling to 0.35 mm doubles rows and columns: the model view grows fourfold.
    assert peak_bytes(shape, spacing, [(0.35, 16, 3, 3, 40.0)], batch_size=1) > 2 * small


def test_full_disk_while_training_keeps_no_partial_checkpoint(
    trained_run, tmp_path: Path, capsys, monkeypatch
) -> None:
    data, _ = trained_run
    run = tmp_path / "run"
    real_replace = os.replace

    def full_for_checkpoints(src, dst):
        if str(dst).endswith(".pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_for_checkpoints)
    code, _, err = run_cli(["train", "--data", str(data), "--out", str(run), *TINY], capsys)
    line = assert_user_error(code, err, f"error: {run / 'checkpoints'}", "no space left on the device")
    assert line.split(": ")[1].endswith(".pt")
    assert list((run / "checkpoints").iterdir()) == []  # neither a checkpoint nor a temporary file


def test_folder_with_one_bad_case_keeps_the_complete_results(trained_run, tmp_path: Path, capsys) -> None:
    """Header faults stop a folder before any prediction; a data fault (here NaN voxels) found while
    predicting leaves the cases before it written completely and nothing of the bad case."""
    data, run = trained_run
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(data / "case_00000" / "imaging.nii.gz", inputs / "case_00000.nii.gz")
    _nan_voxels(inputs / "case_00001.nii.gz")
    out = tmp_path / "out"
    code, _, err = run_cli(["predict", "-i", str(inputs), "-o", str(out), "-m", str(run)], capsys)
    assert_user_error(code, err, f"error: {inputs / 'case_00001.nii.gz'}: ", "NaN")
    assert sorted(snapshot(out)) == [RECORD_NAME, "case_00000.nii.gz"]  # the record: for --resume
    assert nib.load(out / "case_00000.nii.gz").get_fdata().shape == (12, 40, 48)

    _volume_4d(inputs / "case_00001.nii.gz")  # a header fault: refused before the first prediction
    out2 = tmp_path / "out2"
    code, _, err = run_cli(["predict", "-i", str(inputs), "-o", str(out2), "-m", str(run)], capsys)
    assert_user_error(code, err, "case_00001.nii.gz: ", "expected a 3D volume")
    assert snapshot(out2) == {}


# ---- an output that is the input ----------------------------------------------------------------------


def test_predict_refuses_to_write_over_its_inputs(trained_run, tmp_path: Path, capsys) -> None:
    """`-o` naming the input (a flat folder's scans share their names with the labels; the file
    itself) would replace the scans, even with --overwrite, which the error must not suggest; the
    input folder of a KiTS layout would end up holding the labels as second inputs of each case."""
    data, run = trained_run
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "case_00001.nii.gz").write_bytes((data / "case_00001" / "imaging.nii.gz").read_bytes())
    kits = tmp_path / "kits"
    shutil.copytree(data, kits)
    before = snapshot(tmp_path)
    model = ["-m", str(run), "--no-progress"]
    attempts = [
        (["-i", str(flat), "-o", str(flat), "--overwrite"], flat / "case_00001.nii.gz", "replace the scan"),
        (
            ["-i", str(flat / "case_00001.nii.gz"), "-o", str(flat / "case_00001.nii.gz"), "--overwrite"],
            flat / "case_00001.nii.gz",
            "replace the scan",
        ),
        (
            ["-i", str(kits), "-o", str(tmp_path / "flat" / ".." / "kits")],
            tmp_path / "flat" / ".." / "kits",
            "read as inputs by the next run",
        ),
    ]
    for args, named, fragment in attempts:
        code, _, err = run_cli(["predict", *args, *model], capsys)
        line = assert_user_error(code, err, f"error: {named}: is the input itself", fragment)
        assert "--overwrite" not in line
    assert snapshot(tmp_path) == before


def test_convert_import_and_paint_refuse_their_input_as_output(tmp_path: Path, capsys) -> None:
    kits = tmp_path / "kits"
    for i in range(2):
        image, label = blob_case(seed=i)
        save_nifti(kits / f"case_{i:05d}" / "imaging.nii.gz", image, AFFINE, np.int16)
        save_nifti(kits / f"case_{i:05d}" / "segmentation.nii.gz", label, AFFINE, np.uint8)
    (kits / "kits.json").write_text("[]\n")
    before = snapshot(tmp_path)
    image = kits / "case_00000" / "imaging.nii.gz"
    for args, named in [
        (["convert", str(image), str(image), "--overwrite"], image),
        (["import-kits", "--data", str(kits), "-o", str(kits), "--overwrite"], kits),
        (["synth", "--out", str(kits), "--from-masks", str(kits), "--no-progress"], kits),
    ]:
        code, _, err = run_cli(args, capsys)
        assert_user_error(code, err, f"error: {named}: is the input itself")
    assert snapshot(tmp_path) == before


def test_training_and_cross_validation_refuse_each_others_folder(trained_run, tmp_path: Path, capsys) -> None:
    """`predict -m FOLDER` takes a cross-validation's folds or a run's checkpoints: a folder holding
    both would be read as one of them without a word, so neither job starts in the other's folder."""
    data, _ = trained_run
    tiny = ["--recipe", "resunet25d", "--profile", "tiny", "--no-progress"]
    cv_folder = tmp_path / "cv"
    (cv_folder / "fold_0" / "checkpoints").mkdir(parents=True)
    (cv_folder / "fold_1").mkdir()
    run_folder = tmp_path / "run"
    (run_folder / "checkpoints").mkdir(parents=True)
    before = snapshot(tmp_path)
    for args, message in [
        (
            ["train", "--data", str(data), "--out", str(cv_folder), "--resume"],
            "holds a cross-validation (fold_0, fold_1)",
        ),
        (
            ["cv", "--data", str(data), "--out", str(run_folder), "--folds", "2"],
            "holds a training run (checkpoints/)",
        ),
    ]:
        code, _, err = run_cli([*args, *tiny], capsys)
        assert_user_error(code, err, f"error: {args[4]}: {message}", "needs a folder of its own")
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in cv_folder.iterdir()) == ["fold_0", "fold_1"]
