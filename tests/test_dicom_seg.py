"""DICOM Segmentation files read back as KiTS label maps: segments matched by their codes or names,
a SEG that omits empty frames placed on its CT's grid, and SEG files in ``evaluate``, ``report``
and ``view`` beside NIfTI."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import blob_case
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid
from test_cli import run_cli
from test_dicom import _expected_affine, write_series

from nephroseg.io import read_volume
from nephroseg.io.dicom import list_series, read_dicom_series, sorted_slices
from nephroseg.io.dicom_seg import segment_descriptions, write_dicom_seg

# A multi-organ SEG as other tools write them: segment numbers in another order than KiTS labels,
# named in the SEG's own words, an organ nephroseg does not segment.
FOREIGN_SEGMENTS = (
    ("Liver", codes.SCT.Organ, codes.SCT.Liver),
    ("Renal tumor", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm),
    ("Left kidney", codes.SCT.Organ, hd.sr.CodedConcept("18639004", "SCT", "Left kidney")),
)


@pytest.fixture
def case(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A CT series (8 slices; kidney and tumor on slices 2–6 only) and its label, as stored."""
    image, label = blob_case(shape=(8, 40, 48), seed=3)
    assert not label[[0, 1, 7]].any() and label[2].any() and label[6].any()
    write_series(tmp_path / "patient9", image.astype(np.float32))
    return tmp_path / "patient9", label


def write_foreign_seg(series: Path, label: np.ndarray, target: Path, *, segments: int = 3) -> Path:
    """KiTS ``label`` as a SEG with the first ``segments`` of FOREIGN_SEGMENTS that omits empty
    frames (as many tools do)."""
    datasets, _ = sorted_slices(list_series(series)[0])
    masks = np.zeros((*label.shape, 3), dtype=bool)
    masks[..., 0] = label == 0  # liver beside the kidney, on the same slices
    masks[..., 0] &= label.any(axis=(1, 2))[:, None, None]
    masks[..., 1] = label == 2
    masks[..., 2] = label == 1
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=masks[..., :segments].astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(FOREIGN_SEGMENTS[:segments], "other", "1"),
        series_instance_uid=generate_uid(),
        series_number=901,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="other",
        manufacturer_model_name="other",
        software_versions="1",
        device_serial_number="0",
        omit_empty_frames=True,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(target)
    return target


def test_our_dicom_seg_reads_back_on_the_series_grid_to_the_voxel(case, tmp_path: Path) -> None:
    series, label = case
    write_dicom_seg(label, series, tmp_path / "ours.dcm")
    read = read_volume(tmp_path / "ours.dcm", label=True)  # every frame kept: its own grid is the CT's
    ct = read_dicom_series(series)
    assert read.array.dtype == np.uint8 and read.array.shape == ct.array.shape
    np.testing.assert_allclose(read.affine, ct.affine, atol=1e-6)
    nifti = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(label, _expected_affine()), nifti)
    np.testing.assert_array_equal(read.array, read_volume(nifti, label=True).array)


def test_convert_a_seg_to_a_nifti_label_map(case, tmp_path: Path, capsys) -> None:
    series, label = case
    seg = write_foreign_seg(series, label, tmp_path / "other.dcm")
    code, _, err = run_cli(["convert", str(seg), str(tmp_path / "label.nii.gz"), "--label"], capsys)
    assert code == 0, err
    converted = read_volume(tmp_path / "label.nii.gz", label=True)
    # its own grid: stored slices 2–6 of the CT, canonical (head first) slices 1–5
    ct = read_dicom_series(series)
    expected_affine = ct.affine.copy()
    expected_affine[:3, 3] += ct.affine[:3, 0]
    np.testing.assert_allclose(converted.affine, expected_affine, atol=1e-5)
    nib.save(nib.Nifti1Image(label, _expected_affine()), tmp_path / "truth.nii.gz")
    np.testing.assert_array_equal(
        converted.array, read_volume(tmp_path / "truth.nii.gz", label=True).array[1:6]
    )


def test_foreign_seg_without_empty_frames_is_placed_on_its_ct(case, tmp_path: Path) -> None:
    series, label = case
    seg = write_foreign_seg(series, label, tmp_path / "other.dcm")
    assert len(pydicom.dcmread(seg).PerFrameFunctionalGroupsSequence) < 3 * label.shape[0]
    alone = read_volume(seg, label=True)
    assert alone.array.shape == (5, 40, 48)  # slices 2–6 only: its own grid
    ct = read_dicom_series(series)
    placed = read_volume(seg, label=True, on_grid_of=ct)
    assert placed.array.shape == ct.array.shape and np.array_equal(placed.affine, ct.affine)
    nifti = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(label, _expected_affine()), nifti)
    # the liver segment is left out; renal tumor → 2, left kidney → 1, voxel for voxel
    np.testing.assert_array_equal(placed.array, read_volume(nifti, label=True).array)


@pytest.mark.parametrize(
    "bad", ["shifted_seg", "longer_seg", "organ_only_seg", "ct_slice_as_label", "ct_slice_as_image"]
)
def test_bad_seg_input_is_refused_in_one_line(bad: str, case, tmp_path: Path, capsys) -> None:
    series, label = case
    image, flag = series, "--gt"
    if bad == "shifted_seg":  # the same label on a series shifted by half a column
        write_series(tmp_path / "shifted", np.zeros(label.shape, np.float32), origin=(-100.35, -80.0, 50.0))
        named = write_dicom_seg(label, tmp_path / "shifted", tmp_path / "shifted.dcm")
        problem = f"does not lie on the grid of {series}"
    elif bad == "longer_seg":  # made on a series of two more slices above the CT's
        longer = np.concatenate([label, label[-2:]])
        write_series(tmp_path / "longer", np.zeros(longer.shape, np.float32))
        named = write_dicom_seg(longer, tmp_path / "longer", tmp_path / "longer.dcm")
        problem = f"reaches outside the grid of {series}"
    elif bad == "organ_only_seg":
        named = write_foreign_seg(series, label, tmp_path / "liver.dcm", segments=1)
        problem = "no kidney or tumor segment among its segments (1 'Liver')"
    elif bad == "ct_slice_as_label":
        named, problem = sorted(series.glob("*.dcm"))[0], "not a readable DICOM Segmentation"
    else:
        image = named = sorted(series.glob("*.dcm"))[0]
        flag, problem = None, "one DICOM file is not a CT volume: give the folder of its series"
    out = tmp_path / "page.html"
    args = ["view", str(image), "-o", str(out), *([flag, str(named)] if flag else [])]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and err.startswith(f"error: {named}: ") and problem in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_evaluate_and_view_take_seg_files(case, tmp_path: Path, capsys) -> None:
    """A radiologist's SEG as the truth (empty frames omitted), our NIfTI as the prediction."""
    from test_viewer import LABEL_GREY_STEP, decode, page_data

    series, label = case
    write_foreign_seg(series, label, tmp_path / "truth" / "patient9.dcm")
    prediction = label.copy()
    prediction[4][prediction[4] == 2] = 1  # one slice's tumor called kidney
    (tmp_path / "pred").mkdir()
    nib.save(nib.Nifti1Image(prediction, _expected_affine()), tmp_path / "pred" / "patient9.nii.gz")
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "truth")]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "scores")], capsys)
    assert code == 0, err
    scored = json.loads((tmp_path / "scores" / "metrics.json").read_text())["mean"]
    kept = np.count_nonzero(prediction == 2)  # all of them true tumor
    expected_tumor_dice = 2 * kept / (kept + np.count_nonzero(label == 2))
    assert scored["tumor_dice"] == pytest.approx(expected_tumor_dice) and expected_tumor_dice < 0.9
    # the same prediction as our SEG (every frame) against the reader's SEG (segmented slices only)
    write_dicom_seg(prediction, series, tmp_path / "pred_seg" / "patient9.dcm")
    args = ["evaluate", "--pred", str(tmp_path / "pred_seg"), "--gt", str(tmp_path / "truth")]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "scores_seg")], capsys)
    assert code == 0, err
    both_seg = json.loads((tmp_path / "scores_seg" / "metrics.json").read_text())["mean"]
    assert both_seg == pytest.approx(scored)
    assert scored["kidney_tumor_dice"] == pytest.approx(1.0)
    out = tmp_path / "patient9.html"
    args = ["view", str(series), "--gt", str(tmp_path / "truth" / "patient9.dcm"), "-o", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    nib.save(nib.Nifti1Image(label, _expected_affine()), tmp_path / "label.nii.gz")
    expected = read_volume(tmp_path / "label.nii.gz", label=True).array  # canonical, as the page
    shown = np.stack([decode(url) // LABEL_GREY_STEP for url in page_data(out)["truth"]])
    np.testing.assert_array_equal(shown, expected)
