"""The KiTS19 layout and kits.json as they ship."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_KITS, blob_case, kits_affine, save_nifti

from nephroseg.errors import NephrosegInputError, NephrosegInputWarning
from nephroseg.io import (
    ClinicalRecord,
    find_cases,
    labelled_cases,
    load_case,
    read_kits_json,
    write_kits_json,
)
from nephroseg.io.listing import case_id_of, images_by_case, labels_by_case


def test_find_and_load_cases(kits_dir: Path) -> None:
    cases = find_cases(kits_dir)
    assert [c.case_id for c in cases] == ["case_00000", "case_00001", "case_00002"]
    image, label = load_case(cases[1])
    assert image.array.shape == label.array.shape == (12, 40, 48)
    assert image.spacing == pytest.approx((3.0, 1.6, 1.6))
    assert set(np.unique(label.array)) == {0, 1, 2}


def test_test_cases_without_segmentation_are_allowed(kits_dir: Path) -> None:
    (kits_dir / "case_00002" / "segmentation.nii.gz").unlink()
    cases = find_cases(kits_dir)
    assert cases[2].segmentation is None
    assert load_case(cases[2])[1] is None
    # training takes the labelled ones, as with KiTS19's test cases 210-299 beside the others
    with pytest.warns(
        NephrosegInputWarning, match="1 case.s. without segmentation.nii.gz left out: case_00002"
    ):
        assert [c.case_id for c in labelled_cases(kits_dir)] == ["case_00000", "case_00001"]
    for case in ("case_00000", "case_00001"):
        (kits_dir / case / "segmentation.nii.gz").unlink()
    with pytest.raises(NephrosegInputError, match=r"no case has a segmentation\.nii\.gz: training needs"):
        labelled_cases(kits_dir)


def test_case_folder_without_imaging(kits_dir: Path) -> None:
    (kits_dir / "case_00007").mkdir()
    with pytest.raises(NephrosegInputError, match=r"case_00007.*imaging.nii.gz"):
        find_cases(kits_dir)


def test_empty_or_missing_data_folder(tmp_path: Path) -> None:
    with pytest.raises(NephrosegInputError, match="no case_NNNNN folders"):
        find_cases(tmp_path)
    with pytest.raises(NephrosegInputError, match="data folder not found"):
        find_cases(tmp_path / "absent")


def test_image_and_label_shape_mismatch(kits_dir: Path) -> None:
    case = kits_dir / "case_00000"
    save_nifti(case / "segmentation.nii.gz", np.zeros((12, 40, 47), np.uint8), kits_affine((3.0, 1.5, 1.5)))
    with pytest.raises(NephrosegInputError, match=r"segmentation.nii.gz: label shape \(12, 40, 47\) differs"):
        load_case(find_cases(kits_dir)[0])


def test_image_and_label_affine_mismatch(kits_dir: Path) -> None:
    _, label = blob_case(seed=0)
    save_nifti(kits_dir / "case_00000" / "segmentation.nii.gz", label, kits_affine((3.0, 1.5, 1.6)), np.uint8)
    with pytest.raises(NephrosegInputError, match=r"label affine differs .* by up to 0\.1 mm"):
        load_case(find_cases(kits_dir)[0])


def test_label_stored_in_another_orientation_is_the_same_grid(kits_dir: Path) -> None:
    """A label saved R-A-S by a viewer over the image's own voxels (stored I-P-L) is read onto them;
    the same label moved by 4.5 mm is still refused."""
    import nibabel as nib

    path = kits_dir / "case_00000" / "segmentation.nii.gz"
    stored = nib.load(path)
    expected = np.asarray(stored.dataobj)
    ras = nib.as_closest_canonical(stored)
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S") and ras.shape != stored.shape
    nib.save(ras, path)
    _, label = load_case(find_cases(kits_dir)[0])
    np.testing.assert_array_equal(label.array, expected)
    moved = ras.affine.copy()
    moved[2, 3] += 4.5
    nib.save(nib.Nifti1Image(np.asarray(ras.dataobj), moved), path)
    with pytest.raises(NephrosegInputError, match=r"label affine differs .* by up to 4\.5 mm"):
        load_case(find_cases(kits_dir)[0])


def test_listing_maps_submission_names_to_case_ids(tmp_path: Path, kits_dir: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert case_id_of(Path("prediction_00012.nii.gz")) == "case_00012"
    assert case_id_of(Path("case_00003.nii")) == "case_00003"
    assert sorted(images_by_case(kits_dir)) == ["case_00000", "case_00001", "case_00002"]
    assert labels_by_case(kits_dir)["case_00001"].name == "segmentation.nii.gz"
    with pytest.raises(NephrosegInputError, match=r"no volumes found \(looked for .*case_\*/segmentation"):
        labels_by_case(tmp_path / "empty")
    flat = tmp_path / "flat"
    flat.mkdir()
    _, label = blob_case(seed=0)
    for name in ("case_00004.nii.gz", "prediction_00004.nii.gz"):  # two names of one case
        save_nifti(flat / name, label, kits_affine((3.0, 1.5, 1.5)), np.uint8)
    with pytest.raises(
        NephrosegInputError, match=r"two inputs for case 'case_00004': case_00004\.nii\.gz and pre"
    ):
        labels_by_case(flat)


RECORD = {
    "case_id": "case_00000",
    "age_at_nephrectomy": 49,
    "gender": "male",
    "body_mass_index": 29.47,
    "comorbidities": {"copd": False},
    "pack_years": "15",
    "hospitalization": "died_before_discharge",
    "radiographic_size": 2.4,
    "malignant": True,
    "tumor_histologic_subtype": "clear_cell_rcc",
    "tumor_isup_grade": None,
    "last_preop_egfr": {"value": ">=90", "days_before_nephrectomy": 54},
    "voxel_spacing": {"x_spacing": 0.92, "y_spacing": 0.92, "z_spacing": 0.5},
    "a_future_field": [1, 2],
}


def test_kits_json_typed_records_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "kits.json"
    path.write_text(json.dumps([RECORD]))
    record = read_kits_json(path)["case_00000"]
    assert record.radiographic_size == 2.4
    assert record.voxel_spacing.z_spacing == 0.5
    assert record.last_preop_egfr.value == ">=90"
    assert record.hospitalization == "died_before_discharge"
    write_kits_json(tmp_path / "copy.json", [record])
    assert read_kits_json(tmp_path / "copy.json")["case_00000"] == record


def test_kits_json_wrong_type_names_case_and_field(tmp_path: Path) -> None:
    path = tmp_path / "kits.json"
    path.write_text(json.dumps([{**RECORD, "radiographic_size": "large"}]))
    with pytest.raises(NephrosegInputError, match=r"case_00000: field 'radiographic_size'"):
        read_kits_json(path)
    path.write_text("{not json")
    with pytest.raises(NephrosegInputError, match="not valid JSON"):
        read_kits_json(path)


@pytest.mark.skipif(not (SHARED_KITS / "kits.json").exists(), reason="../shared/kits19 not present")
def test_real_kits_json_parses_every_record() -> None:
    records = read_kits_json(SHARED_KITS / "kits.json")
    assert len(records) == 210
    assert all(isinstance(r, ClinicalRecord) for r in records.values())
    assert records["case_00000"].voxel_spacing.x_spacing == pytest.approx(0.919921875)


@pytest.mark.skipif(not (SHARED_KITS / "case_00000").exists(), reason="../shared/kits19 not present")
def test_real_kits_label_reads_in_canonical_orientation() -> None:
    from nephroseg.io import read_volume

    volume = read_volume(SHARED_KITS / "case_00000" / "segmentation.nii.gz", label=True)
    assert volume.source.axcodes == ("I", "P", "L")
    assert volume.array.shape == (611, 512, 512)
    assert volume.spacing == pytest.approx((0.5, 0.919921875, 0.919921875))


def test_a_single_case_folder_or_its_imaging_file_keeps_the_case_id(kits_dir) -> None:
    from nephroseg.io.listing import case_id_of, images_by_case, labels_by_case

    case = kits_dir / "case_00001"
    assert images_by_case(case) == {"case_00001": case / "imaging.nii.gz"}
    assert labels_by_case(case) == {"case_00001": case / "segmentation.nii.gz"}
    assert images_by_case(case / "imaging.nii.gz") == {"case_00001": case / "imaging.nii.gz"}
    assert case_id_of(kits_dir / "imaging.nii.gz") == "imaging"  # not in a case folder: its own name


def test_listed_shortens_long_lists_for_messages() -> None:
    from nephroseg.errors import listed

    assert listed(["a", "b"], 3) == "a, b"
    assert listed(["a", "b", "c", "d"], 3) == "a, b, c …"
    assert listed(["case_00210", "case_00211", "case_00212", "case_00299"], 2, last=True) == (
        "case_00210, case_00211 … case_00299"
    )
