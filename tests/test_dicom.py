"""DICOM series in (series choice, sorting, rescale, missing/duplicated slices, tilt, modality),
NRRD/MHA in and out, ``nephroseg convert``, and ``nephroseg predict`` on a DICOM folder."""

from __future__ import annotations

import random
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import blob_case
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    MPEG2MPML,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)
from test_cli import run_cli

from nephroseg.errors import NephrosegInputError
from nephroseg.io import read_volume, write_like
from nephroseg.io.dicom import read_dicom_series
from nephroseg.io.dicom_seg import write_dicom_seg
from nephroseg.io.itk import read_itk, write_itk

SPACING = (3.0, 0.8, 0.7)  # slice step, row spacing, column spacing (mm)


def write_series(
    folder: Path,
    hu: np.ndarray,
    *,
    modality: str = "CT",
    series_uid: str | None = None,
    origin=(-100.0, -80.0, 50.0),
    tilt_mm: float = 0.0,
    slope: float = 1.0,
    intercept: float = -1024.0,
    compress: str | None = None,
    description: str = "abdomen",
    patient_id: str = "nephroseg-0",
) -> list[Path]:
    """Axial slices (LPS: rows run posterior, columns run left), stacked towards the head."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study = generate_uid()
    frame = generate_uid()
    stored = np.round((hu - intercept) / slope).astype(np.uint16)
    paths = []
    for k, pixels in enumerate(stored):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"slice_{k:03d}_{random.random():.6f}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame
        ds.Modality, ds.SeriesDescription = modality, description
        ds.PatientName, ds.PatientID = "Phantom^Test", patient_id
        ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName = "", "O", ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20261124", "120000", "1", ""
        ds.SeriesNumber, ds.Manufacturer = 2, "phantom"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin[0] + tilt_mm * k, origin[1], origin[2] + SPACING[0] * k]
        ds.PixelSpacing = [SPACING[1], SPACING[2]]
        ds.SliceThickness = SPACING[0]
        ds.InstanceNumber = k + 1
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = pixels.tobytes()
        if compress:
            ds.compress(compress)  # a transfer syntax UID; pydicom encodes with the installed plugin
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture
def ct() -> tuple[np.ndarray, np.ndarray]:
    return blob_case(shape=(8, 40, 48), seed=3)


def _expected_affine(origin=(-100.0, -80.0, 50.0)) -> np.ndarray:
    """(slice, row, column) → RAS: slices go up (+S), rows posterior (−A), columns left (−R)."""
    lps = np.array(
        [
            [0, 0, SPACING[2], origin[0]],
            [0, SPACING[1], 0, origin[1]],
            [SPACING[0], 0, 0, origin[2]],
            [0, 0, 0, 1],
        ]
    )
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def test_series_reads_in_any_file_order_with_rescale_and_geometry(tmp_path: Path, ct) -> None:
    image, _ = ct
    paths = write_series(tmp_path / "dcm", image.astype(np.float32), slope=0.5, intercept=-1024)
    random.Random(0).shuffle(paths)  # names carry random parts: directory order is shuffled too
    volume = read_dicom_series(tmp_path / "dcm")
    np.testing.assert_allclose(volume.to_source_orientation(volume.array), image, atol=0.5)
    np.testing.assert_allclose(volume.source.affine, _expected_affine(), atol=1e-6)
    # The same array saved as NIfTI with that affine reads back identical, array and world coordinates.
    nifti = tmp_path / "same.nii.gz"
    nib.save(nib.Nifti1Image(volume.to_source_orientation(volume.array), volume.source.affine), nifti)
    twin = read_volume(nifti)
    np.testing.assert_array_equal(twin.array, volume.array)
    np.testing.assert_allclose(twin.affine, volume.affine, atol=1e-6)


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_compressed_series_decodes_to_the_same_hounsfield_units(tmp_path: Path, ct, syntax) -> None:
    """RLE (pydicom's own codec), JPEG-LS and JPEG 2000 (pylibjpeg plugins) decode losslessly."""
    image, _ = ct
    paths = write_series(tmp_path / "c", image.astype(np.float32), compress=syntax)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == syntax
    volume = read_dicom_series(tmp_path / "c")
    np.testing.assert_allclose(volume.to_source_orientation(volume.array), image, atol=0.5)


def test_a_transfer_syntax_without_a_decoder_is_refused_naming_it(tmp_path: Path, ct) -> None:
    image, _ = ct
    paths = write_series(tmp_path / "xl", image.astype(np.float32))
    for path in paths:  # relabelled as MPEG-2 video, which no installed plugin decodes
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = MPEG2MPML
        ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x0a" + b"\0" * 32])
        ds.save_as(path, enforce_file_format=True)
    with pytest.raises(NephrosegInputError, match=r"cannot be decoded \(transfer syntax 1\.2\.840"):
        read_dicom_series(tmp_path / "xl")


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("PixelSpacing", [0.8, 0.75], "PixelSpacing [0.8, 0.75] differs from"),
        (
            "ImageOrientationPatient",
            [1, 0, 0, 0, 0.9998, 0.02],
            "ImageOrientationPatient [1.0, 0.0, 0.0, 0.0, 0.9998, 0.02] differs from",
        ),
        ("Rows", None, "Rows 20 differs from"),
        ("PixelSpacing", None, "no PixelSpacing, the slice cannot be placed"),
    ],
)
def test_slices_that_do_not_match_are_refused(
    tmp_path: Path, ct, key: str, value, shown: str, capsys
) -> None:
    """A slice of another size, spacing or orientation cannot be stacked: refused by name, not a
    numpy error."""
    image, _ = ct
    paths = write_series(tmp_path / "mixed", image.astype(np.float32))
    ds = pydicom.dcmread(paths[0] if shown.startswith("no ") else paths[3])
    if value is None and key == "Rows":
        ds.Rows, ds.PixelData = 20, ds.pixel_array[:20].tobytes()
    elif value is None:
        del ds[key]
    else:
        setattr(ds, key, value)
    ds.save_as(ds.filename, enforce_file_format=True)
    out = tmp_path / "ct.nii.gz"
    code, _, err = run_cli(["convert", str(tmp_path / "mixed"), str(out)], capsys)
    assert code == 2 and err.startswith(f"error: {tmp_path / 'mixed'}: ") and shown in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def write_enhanced(slices: list[Path], target: Path, modality: str = "CT") -> Path:
    """The single-frame series as one legacy-converted enhanced (multi-frame) image, as highdicom
    converts them (in stacking order), then its frames stored in shuffled order."""
    import highdicom as hd

    kind = (
        hd.legacy.LegacyConvertedEnhancedCTImage
        if modality == "CT"
        else hd.legacy.LegacyConvertedEnhancedMRImage
    )
    datasets = [pydicom.dcmread(path) for path in slices]
    if modality == "MR":
        for ds in datasets:
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.MRImageStorage
    uids = {"series_instance_uid": generate_uid(), "sop_instance_uid": generate_uid()}
    image = kind(datasets, series_number=5, instance_number=1, **uids)
    order = list(range(int(image.NumberOfFrames)))
    random.Random(5).shuffle(order)
    frames = image.pixel_array[order]
    groups = image.PerFrameFunctionalGroupsSequence
    image.PerFrameFunctionalGroupsSequence = pydicom.Sequence([groups[i] for i in order])
    image.PixelData = np.ascontiguousarray(frames).tobytes()
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save_as(target)
    return target


def test_enhanced_multiframe_ct_reads_as_its_single_frame_series(tmp_path: Path, ct) -> None:
    image, label = ct
    slices = write_series(tmp_path / "slices", image.astype(np.float32))
    write_enhanced(slices, tmp_path / "enhanced" / "ct.dcm")
    # a DICOM-SEG beside it has more frames (two segments × 8) and must not be taken for the CT
    write_dicom_seg(label, tmp_path / "slices", tmp_path / "enhanced" / "seg.dcm")
    single, enhanced = read_dicom_series(tmp_path / "slices"), read_dicom_series(tmp_path / "enhanced")
    np.testing.assert_array_equal(enhanced.array, single.array)
    np.testing.assert_allclose(enhanced.affine, single.affine, atol=1e-6)
    mr = write_series(tmp_path / "mr", image.astype(np.float32), modality="MR")
    write_enhanced(mr, tmp_path / "emr" / "mr.dcm", modality="MR")
    with pytest.raises(NephrosegInputError, match=r"is not CT \(Modality MR\): refused"):
        read_dicom_series(tmp_path / "emr")


def test_predict_on_an_enhanced_ct(trained_run, tmp_path: Path, ct, capsys) -> None:
    _, run = trained_run
    image, _ = ct
    slices = write_series(tmp_path / "slices", image.astype(np.float32))
    write_enhanced(slices, tmp_path / "enhanced" / "ct.dcm")
    base = ["-m", str(run), "--no-progress"]
    for name in ("slices", "enhanced"):
        code, _, err = run_cli(
            ["predict", "-i", str(tmp_path / name), "-o", str(tmp_path / f"{name}.nii.gz"), *base], capsys
        )
        assert code == 0, err
    from_slices = read_volume(tmp_path / "slices.nii.gz", label=True)
    from_enhanced = read_volume(tmp_path / "enhanced.nii.gz", label=True)
    np.testing.assert_array_equal(from_enhanced.array, from_slices.array)
    np.testing.assert_allclose(from_enhanced.affine, from_slices.affine, atol=1e-6)
    args = [
        "predict",
        "-i",
        str(tmp_path / "enhanced"),
        "-o",
        str(tmp_path / "seg"),
        *base,
        "--format",
        "dicom-seg",
    ]
    code, _, err = run_cli(args, capsys)  # DICOM-SEG on the enhanced CT, its frames stored shuffled
    assert code == 0, err
    ct = read_dicom_series(tmp_path / "enhanced")
    from_seg = read_volume(tmp_path / "seg" / "enhanced.dcm", label=True, on_grid_of=ct)
    np.testing.assert_array_equal(from_seg.array, from_enhanced.array)


def test_dicom_seg_on_an_enhanced_ct_puts_each_frame_in_place(tmp_path: Path, ct) -> None:
    """Frames stored shuffled: each SEG frame must carry the label of its own position."""
    image, label = ct
    write_enhanced(
        write_series(tmp_path / "slices", image.astype(np.float32)), tmp_path / "enhanced" / "ct.dcm"
    )
    volume = read_dicom_series(tmp_path / "enhanced")
    nib.save(nib.Nifti1Image(label, _expected_affine()), tmp_path / "label.nii.gz")
    truth = read_volume(tmp_path / "label.nii.gz", label=True).array  # canonical
    write_dicom_seg(volume.to_source_orientation(truth), tmp_path / "enhanced", tmp_path / "seg.dcm")
    assert pydicom.dcmread(tmp_path / "seg.dcm").NumberOfFrames == 2 * label.shape[0]
    placed = read_volume(tmp_path / "seg.dcm", label=True, on_grid_of=volume)
    np.testing.assert_array_equal(placed.array, truth)


def test_uneven_slice_spacing_is_refused_with_the_steps(tmp_path: Path, ct) -> None:
    image, _ = ct
    paths = write_series(tmp_path / "uneven", image.astype(np.float32))
    for k, path in enumerate(paths[4:], start=4):  # from the fifth slice on, steps of 3.3 mm
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [-100.0, -80.0, 50.0 + SPACING[0] * 4 + 3.3 * (k - 4)]
        ds.save_as(path, enforce_file_format=True)
    with pytest.raises(NephrosegInputError, match=r"uneven slice spacing: steps from 3\.000 to 3\.300 mm"):
        read_dicom_series(tmp_path / "uneven")


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("missing", "missing slice(s): a gap of 6.00 mm"),
        ("duplicate", "duplicated slice position"),
        ("tilt", "gantry tilt"),
        ("modality", "is not CT (Modality MR)"),
        ("single", "single slice"),
    ],
)
def test_damaged_series_is_refused_with_the_problem_named(
    tmp_path: Path, ct, damage: str, fragment: str
) -> None:
    image, _ = ct
    folder = tmp_path / damage
    if damage == "tilt":
        write_series(folder, image.astype(np.float32), tilt_mm=1.5)
    elif damage == "modality":
        write_series(folder, image.astype(np.float32), modality="MR")
    elif damage == "single":
        write_series(folder, image[:1].astype(np.float32))
    else:
        paths = write_series(folder, image.astype(np.float32))
        if damage == "missing":
            paths[4].unlink()
        else:
            ds = pydicom.dcmread(paths[4])
            ds.SOPInstanceUID = generate_uid()
            ds.save_as(folder / "copy_of_4.dcm", enforce_file_format=True)
    with pytest.raises(NephrosegInputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        read_dicom_series(folder)


def test_two_series_largest_wins_uid_selects_and_a_tie_is_listed(tmp_path: Path, ct) -> None:
    image, _ = ct
    folder = tmp_path / "two"
    write_series(folder / "a", image.astype(np.float32), series_uid="1.2.3.4", description="thin")
    write_series(folder / "b", image[:5].astype(np.float32), series_uid="1.2.3.5", description="scout")
    assert read_dicom_series(folder).array.shape[0] == 8
    assert read_dicom_series(folder, series_uid="1.2.3.5").array.shape[0] == 5
    with pytest.raises(NephrosegInputError, match=r"no series with SeriesInstanceUID 9\.9"):
        read_dicom_series(folder, series_uid="9.9")
    write_series(folder / "c", image.astype(np.float32), series_uid="1.2.3.6", description="twin")
    with pytest.raises(
        NephrosegInputError, match=r"several series could be the CT.*1\.2\.3\.4.*1\.2\.3\.6"
    ) as err:
        read_dicom_series(folder)
    assert str(err.value).endswith(f"pick one with `nephroseg convert {folder} CT.nii.gz --series-uid UID`")


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_itk_formats_round_trip_geometry(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 1000, size=(6, 9, 11)).astype(np.int16)
    affine = np.array([[0, 0, -0.7, 10], [0, -0.9, 0, 20], [-2.5, 0, 0, 30], [0, 0, 0, 1]], dtype=np.float64)
    path = write_itk(array, affine, tmp_path / f"v{suffix}")
    back, back_affine = read_itk(path)
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(back_affine, affine, atol=1e-6)
    # Read as a Volume it is the same object as the NIfTI of the same data.
    nifti = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(array, affine), nifti)
    a, b = read_volume(path), read_volume(nifti)
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-6)
    # A label written "like" the NRRD/MHA lands on its grid.
    labels = (a.array > 0).astype(np.uint8)
    out = write_like(labels, a, tmp_path / f"labels{suffix}")
    np.testing.assert_array_equal(read_itk(out)[0], (array > 0).astype(np.uint8))


def test_convert_dicom_to_nifti_and_refusals(tmp_path: Path, ct, capsys) -> None:
    image, _ = ct
    write_series(tmp_path / "dcm", image.astype(np.float32))
    target = tmp_path / "ct.nii.gz"
    code, _, err = run_cli(["convert", str(tmp_path / "dcm"), str(target)], capsys)
    assert code == 0, err
    converted = nib.load(target)
    np.testing.assert_allclose(np.asarray(converted.dataobj), image, atol=0.5)
    np.testing.assert_allclose(converted.affine, _expected_affine(), atol=1e-5)
    code, _, err = run_cli(["convert", str(tmp_path / "dcm"), str(target)], capsys)
    assert code == 2 and "output exists" in err
    code, _, err = run_cli(["convert", str(target), str(tmp_path / "ct.nrrd")], capsys)
    assert code == 0, err
    np.testing.assert_allclose(read_itk(tmp_path / "ct.nrrd")[0], np.asarray(converted.dataobj))
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["convert", str(tmp_path / "empty"), str(tmp_path / "x.nii.gz")], capsys)
    assert code == 2 and "no DICOM image series" in err and not (tmp_path / "x.nii.gz").exists()


def test_predict_on_a_dicom_folder_writes_on_the_series_grid(trained_run, tmp_path: Path, ct, capsys) -> None:
    _, run = trained_run
    image, _ = ct
    write_series(tmp_path / "patient7", image.astype(np.float32))
    out = tmp_path / "out"
    for fmt, suffix in (("nifti", ".nii.gz"), ("nrrd", ".nrrd")):
        args = ["predict", "-i", str(tmp_path / "patient7"), "-o", str(out), "-m", str(run), "--no-progress"]
        code, _, err = run_cli([*args, "--format", fmt], capsys)
        assert code == 0, err
        written = read_volume(out / f"patient7{suffix}", label=True)
        assert written.source.shape == image.shape
        np.testing.assert_allclose(written.source.affine, _expected_affine(), atol=1e-5)


def test_training_that_diverges_stops_with_a_clear_message(trained_run, tmp_path: Path, capsys) -> None:
    data, _ = trained_run
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--recipe", "resunet25d"]
    overrides = ["train.optimizer=sgd", "train.lr=1e30", "train.iterations_per_epoch=6"]
    code, _, err = run_cli(
        [*args, "--profile", "tiny", "--no-progress", *[a for o in overrides for a in ("--set", o)]], capsys
    )
    assert code == 2 and "training diverged" in err


def test_dicom_seg_output_matches_the_nifti_output_voxel_for_voxel(
    trained_run, tmp_path: Path, ct, capsys
) -> None:
    import highdicom as hd

    _, run = trained_run
    image, _ = ct
    write_series(tmp_path / "patient8", image.astype(np.float32))
    base = ["predict", "-i", str(tmp_path / "patient8"), "-m", str(run), "--no-progress"]
    assert run_cli([*base, "-o", str(tmp_path / "nii")], capsys)[0] == 0
    code, _, err = run_cli([*base, "-o", str(tmp_path / "seg"), "--format", "dicom-seg"], capsys)
    assert code == 0, err
    nifti = read_volume(tmp_path / "nii" / "patient8.nii.gz", label=True)
    from_seg = read_volume(tmp_path / "seg" / "patient8.dcm", label=True)
    np.testing.assert_array_equal(from_seg.array, nifti.array)
    np.testing.assert_allclose(from_seg.affine, nifti.affine, atol=1e-6)
    # the SEG folder is a folder of predictions like any other: scored against the NIfTI ones, reported
    code, out, err = run_cli(
        ["evaluate", "--pred", str(tmp_path / "seg"), "--gt", str(tmp_path / "nii")], capsys
    )
    assert code == 0 and "composite_dice=1.0000" in out, err
    report = ["report", "--pred", str(tmp_path / "seg"), "--images", str(tmp_path / "patient8")]
    code, _, err = run_cli([*report, "--out", str(tmp_path / "report"), "--no-progress"], capsys)
    assert code == 0, err
    assert (tmp_path / "report" / "viewer" / "patient8.html").is_file()
    # a named .dcm output is that file; without --format dicom-seg it is refused, nothing written
    code, _, err = run_cli([*base, "-o", str(tmp_path / "one.dcm"), "--format", "dicom-seg"], capsys)
    assert code == 0 and (tmp_path / "one.dcm").is_file(), err
    np.testing.assert_array_equal(read_volume(tmp_path / "one.dcm", label=True).array, nifti.array)
    code, _, err = run_cli([*base, "-o", str(tmp_path / "two.dcm")], capsys)
    assert code == 2 and "a .dcm output is a DICOM-SEG: pass --format dicom-seg" in err
    assert not (tmp_path / "two.dcm").exists()
    seg = hd.seg.segread(tmp_path / "seg" / "patient8.dcm")
    labels = [d.SegmentLabel for d in seg.SegmentSequence]
    assert labels == ["Kidney", "Kidney tumor"]
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "64033007"
    assert seg.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    referenced = {r.SeriesInstanceUID for r in seg.ReferencedSeriesSequence}
    assert referenced == {pydicom.dcmread(next((tmp_path / "patient8").glob("*.dcm"))).SeriesInstanceUID}


def test_predict_a_folder_of_patient_dicom_exports(trained_run, tmp_path: Path, ct, capsys) -> None:
    """One subfolder per patient, its series directly inside or nested (patient/study/series as
    hospital exports come): each is one case named by the subfolder, predicted as if given alone."""
    _, run = trained_run
    image, _ = ct
    exports = tmp_path / "exports"
    write_series(exports / "patientA", image.astype(np.float32), patient_id="A")
    nested = exports / "PAT2" / "STUDY1" / "SERIES3"
    write_series(nested, image[::-1].astype(np.float32), origin=(-90.0, -70.0, 0.0), patient_id="2")
    # the parent itself is not one patient's series: refused rather than one patient picked
    code, _, err = run_cli(["convert", str(exports), str(tmp_path / "one.nii.gz")], capsys)
    assert code == 2 and "holds series of 2 patients ('2', 'A'): give one patient's folder" in err
    (exports / "notes.txt").write_text("not a scan")
    base = ["-m", str(run), "--no-progress"]
    code, _, err = run_cli(["predict", "-i", str(exports), "-o", str(tmp_path / "out"), *base], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == [
        "PAT2.nii.gz",
        "patientA.nii.gz",
    ]
    for case, folder in (("patientA", exports / "patientA"), ("PAT2", exports / "PAT2")):
        alone = tmp_path / f"{case}_alone.nii.gz"
        assert run_cli(["predict", "-i", str(folder), "-o", str(alone), *base], capsys)[0] == 0
        batch = read_volume(tmp_path / "out" / f"{case}.nii.gz", label=True)
        np.testing.assert_array_equal(batch.array, read_volume(alone, label=True).array)
        np.testing.assert_allclose(batch.source.affine, read_dicom_series(folder).source.affine, atol=1e-6)
    report = [
        "report",
        "--pred",
        str(tmp_path / "out"),
        "--images",
        str(exports),
        "--out",
        str(tmp_path / "r"),
    ]
    code, _, err = run_cli([*report, "--no-progress"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "r" / "viewer").iterdir()) == ["PAT2.html", "patientA.html"]
    text = (tmp_path / "r" / "report.md").read_text()  # each result traced back to its series
    uid = pydicom.dcmread(next((exports / "patientA").glob("*.dcm"))).SeriesInstanceUID
    assert (
        "| case | study date | series | series UID | scanner | slices | slice thickness mm | kernel |" in text
    )
    assert f"| patientA | 2026-11-24 | abdomen | {uid} | phantom | 8 | 3.0 |  |" in text
    assert "Phantom^Test" not in text and "| A |" not in text  # nothing that names the patient


def test_dicom_seg_needs_a_dicom_input(trained_run, tmp_path: Path, capsys) -> None:
    data, run = trained_run
    args = ["predict", "-i", str(data), "-o", str(tmp_path / "o"), "-m", str(run), "--format", "dicom-seg"]
    code, _, err = run_cli([*args, "--no-progress"], capsys)
    assert code == 2 and "DICOM-SEG output needs a DICOM series" in err
    assert not (tmp_path / "o").exists()


def test_view_a_dicom_series_with_its_label_as_nifti(tmp_path: Path, ct, capsys) -> None:
    """The viewer reads the series as predict does: the page's slices are the canonical volume's."""
    from test_viewer import LABEL_GREY_STEP, decode, page_data

    image, label = ct
    write_series(tmp_path / "patient7", image.astype(np.float32))
    nib.save(nib.Nifti1Image(label, _expected_affine()), tmp_path / "label.nii.gz")
    out = tmp_path / "patient7.html"
    args = ["view", str(tmp_path / "patient7"), "--gt", str(tmp_path / "label.nii.gz"), "-o", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    data = page_data(out)
    canonical = read_dicom_series(tmp_path / "patient7")
    truth = read_volume(tmp_path / "label.nii.gz", label=True).array
    assert data["title"] == "patient7" and data["shape"] == list(canonical.array.shape)
    grey = np.stack([decode(url) for url in data["ct"]]).astype(float)
    # the CT and the label line up: kidney at 180 HU is grey 217, the background at -100 HU grey 38
    assert grey[truth == 1].mean() > 200 and grey[truth == 0].mean() < 60
    for z in range(truth.shape[0]):
        assert np.array_equal(decode(data["truth"][z]) // LABEL_GREY_STEP, truth[z])
    assert data["table"]["truth_tumor_cm2"] == [
        round(np.count_nonzero(s == 2) * SPACING[1] * SPACING[2] / 100, 3) for s in truth
    ]


@pytest.mark.parametrize("cut_at", [300, 100])
def test_a_slice_file_cut_short_is_refused_not_dropped(tmp_path: Path, ct, cut_at: int) -> None:
    """An interrupted copy: the end slice's file cut inside its header (300 bytes: the file meta and
    no series; 100 bytes: not even the DICM mark) used to vanish from the scan without a word."""
    image, _ = ct
    paths = write_series(tmp_path / "series", image.astype(np.float32))
    end = max(paths, key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    end.write_bytes(end.read_bytes()[:cut_at])
    fragment = (
        "CT image file without its series or slice position" if cut_at > 132 else "damaged DICOM header"
    )
    with pytest.raises(NephrosegInputError, match=f"{end.name}: {fragment}"):
        read_dicom_series(tmp_path / "series")
    (tmp_path / "series" / "notes.txt").write_text("not DICOM, not refused\n")
    end.unlink()
    assert read_dicom_series(tmp_path / "series").array.shape[0] == image.shape[0] - 1


def _strip(paths: list[Path], *keywords: str) -> None:
    for path in paths:
        ds = pydicom.dcmread(path)
        for keyword in keywords:
            delattr(ds, keyword)
        ds.save_as(path, enforce_file_format=True)


def test_dicom_seg_of_an_anonymized_series(trained_run, tmp_path: Path, ct, capsys) -> None:
    """Patient and study attributes an anonymizer deleted (Type 2: may be empty) are written empty
    into the SEG; a series without its FrameOfReferenceUID cannot be referenced, and is refused
    before any prediction, the other patients' SEGs not begun."""
    _, run = trained_run
    image, _ = ct
    anonymized = write_series(tmp_path / "in" / "patient1", image.astype(np.float32))
    _strip(
        anonymized, "AccessionNumber", "StudyID", "PatientBirthDate", "PatientSex", "ReferringPhysicianName"
    )
    base = ["predict", "-m", str(run), "--no-progress", "--format", "dicom-seg"]
    code, _, err = run_cli([*base, "-i", str(tmp_path / "in"), "-o", str(tmp_path / "seg")], capsys)
    assert code == 0, err
    seg = pydicom.dcmread(tmp_path / "seg" / "patient1.dcm")
    assert seg.AccessionNumber == "" and seg.PatientSex == "" and seg.PatientID == "nephroseg-0"
    _strip(write_series(tmp_path / "in" / "patient2", image.astype(np.float32)), "FrameOfReferenceUID")
    code, _, err = run_cli([*base, "-i", str(tmp_path / "in"), "-o", str(tmp_path / "seg2")], capsys)
    assert code == 2 and "has no FrameOfReferenceUID, which a DICOM-SEG needs" in err
    assert err.startswith(f"error: {tmp_path / 'in' / 'patient2'}") and not (tmp_path / "seg2").exists()


def test_dicom_seg_output_inside_a_folder_of_patients_is_refused(
    trained_run, tmp_path: Path, ct, capsys
) -> None:
    """SEGs written into a subfolder of a folder of patients would be taken for another patient's
    series by every later run (``--resume`` included): refused before any work. Inside a patient's
    own folder they are harmless (a SEG is not taken for the CT) and allowed."""
    _, run = trained_run
    image, _ = ct
    write_series(tmp_path / "in" / "patient1", image.astype(np.float32))
    base = ["predict", "-i", str(tmp_path / "in"), "-m", str(run), "--no-progress", "--format", "dicom-seg"]
    code, _, err = run_cli([*base, "-o", str(tmp_path / "in" / "segs")], capsys)
    assert code == 2 and err.startswith(f"error: {tmp_path / 'in' / 'segs'}: lies inside the input folder")
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["patient1"]
    code, _, err = run_cli([*base, "-o", str(tmp_path / "in" / "patient1" / "segs")], capsys)
    assert code == 0, err
    code, _, err = run_cli([*base, "-o", str(tmp_path / "again")], capsys)  # the SEG is not a patient
    assert code == 0 and sorted(p.name for p in (tmp_path / "again").glob("*.dcm")) == ["patient1.dcm"], err


@pytest.mark.parametrize("pixels", [0.3, 0.6])
def test_gantry_tilt_is_refused_once_it_drifts_half_a_pixel(tmp_path: Path, ct, pixels: float) -> None:
    """The volume's affine stacks slices along the normal, so a tilt misplaces the far slices by the
    drift: under half a pixel (0.7 mm columns) it is read, beyond it refused with drift and angle.
    The rule was 0.01 mm per mm of scan: a 0.5° tilt passed, 2.5 mm off at the end of 300 mm."""
    image, _ = ct
    per_slice = pixels * SPACING[2] / (image.shape[0] - 1)
    write_series(tmp_path / "tilted", image.astype(np.float32), tilt_mm=per_slice)
    if pixels < 0.5:
        assert read_dicom_series(tmp_path / "tilted").array.shape == image.shape
        return
    degrees = np.degrees(np.arctan2(pixels * SPACING[2], SPACING[0] * (image.shape[0] - 1)))
    with pytest.raises(
        NephrosegInputError, match=rf"drift 0\.42 mm \({degrees:.2f}°\).* half a 0\.7 mm pixel"
    ):
        read_dicom_series(tmp_path / "tilted")
