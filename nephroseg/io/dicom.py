"""A CT series from a DICOM folder as a ``Volume``, with the checks hospitals' exports need.

Files are grouped by SeriesInstanceUID; the series is the one asked for, else the largest axial CT
series (several of equal size → an error listing them). Slices are sorted by ImagePositionPatient
along the slice normal; RescaleSlope/Intercept give HU. Duplicated positions, missing slices, uneven
spacing, gantry tilt and non-CT modalities are refused with the problem named. The affine maps
(slice, row, column) to RAS+ millimetres (DICOM's LPS with x and y negated), so the volume is the
same object as its NIfTI conversion and a prediction is written back on the series' own grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from nephroseg.errors import NephrosegInputError, listed
from nephroseg.io.volume import LPS_TO_RAS, Volume, volume_from_array

GAP_FACTOR = 1.5  # a step this many times the median step means missing slices
UNEVEN_TOLERANCE = 0.01  # relative spread of steps accepted as even spacing
TILT_TOLERANCE_PIXELS = 0.5  # in-plane drift of the last slice's origin a volume may hold, in pixels
FRAME_KEYS = ("Rows", "Columns", "PixelSpacing", "ImageOrientationPatient")  # equal on every slice
ENHANCED_VOLUME_CLASSES = {  # multi-frame images holding a whole volume (MR and PET: refused as not CT)
    str(uid)
    for uid in (
        pydicom.uid.EnhancedCTImageStorage,
        pydicom.uid.LegacyConvertedEnhancedCTImageStorage,
        pydicom.uid.EnhancedMRImageStorage,
        pydicom.uid.LegacyConvertedEnhancedMRImageStorage,
        pydicom.uid.EnhancedPETImageStorage,
        pydicom.uid.LegacyConvertedEnhancedPETImageStorage,
    )
}

# Every such file is a slice or a volume of the CT: one without a series or position is damaged.
CT_IMAGE_CLASSES = {
    str(uid)
    for uid in (
        pydicom.uid.CTImageStorage,
        pydicom.uid.EnhancedCTImageStorage,
        pydicom.uid.LegacyConvertedEnhancedCTImageStorage,
    )
}


@dataclass(frozen=True)
class Series:
    uid: str
    description: str
    modality: str
    files: tuple[Path, ...]
    slices: int  # one per single-frame file; an enhanced (multi-frame) file holds them all
    patient: str = ""  # PatientID

    @property
    def multiframe(self) -> bool:
        return self.slices > len(self.files)


def is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as stream:
            stream.seek(128)
            return stream.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and any(is_dicom_file(p) for p in sorted(path.rglob("*")) if p.is_file())


def list_series(folder: str | Path) -> list[Series]:
    folder = Path(folder)
    groups: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError) as err:
            if is_dicom_file(path) or path.suffix.lower() == ".dcm":  # DICOM by its mark or its name
                raise NephrosegInputError(
                    path, f"damaged DICOM header ({type(err).__name__}: {err})"
                ) from err
            continue  # not DICOM: a text file, a thumbnail
        if "SeriesInstanceUID" in header and (_is_slice(header) or _frames(header) > 1):
            groups.setdefault(str(header.SeriesInstanceUID), []).append((path, header))
        elif _media_class(header) in CT_IMAGE_CLASSES:
            raise NephrosegInputError(
                path,
                "CT image file without its series or slice position: the header is cut short "
                "(an interrupted copy?); its slice would be missing from the scan",
            )
    series = []
    for uid, members in groups.items():
        first = members[0][1]
        series.append(
            Series(
                uid,
                str(first.get("SeriesDescription", "")),
                str(first.get("Modality", "")),
                tuple(path for path, _ in members),
                sum(_frames(header) for _, header in members),
                str(first.get("PatientID", "")),
            )
        )
    if not series:
        raise NephrosegInputError(
            folder,
            "is a folder with no DICOM image series (expected a NIfTI, NRRD or MHA file, or a DICOM folder)",
        )
    return series


def _media_class(header: pydicom.Dataset) -> str:
    """The SOP class the file meta declares: read before the dataset, so it survives a header cut short."""
    meta = getattr(header, "file_meta", None)
    return str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""


def _is_slice(header: pydicom.Dataset) -> bool:
    return "ImagePositionPatient" in header and "ImageOrientationPatient" in header


def _frames(header: pydicom.Dataset) -> int:
    """Frames of an enhanced (multi-frame) volume image; 1 for a slice, 0 for anything else (a
    DICOM-SEG beside the CT is multi-frame too, and must not be taken for it)."""
    if str(header.get("SOPClassUID", "")) in ENHANCED_VOLUME_CLASSES:
        return int(header.get("NumberOfFrames", 1) or 1)
    return 1 if _is_slice(header) else 0


def choose_series(folder: Path, series: list[Series], series_uid: str | None) -> Series:
    if series_uid is not None:
        for candidate in series:
            if candidate.uid == series_uid:
                return candidate
        known = ", ".join(s.uid for s in series)
        raise NephrosegInputError(folder, f"no series with SeriesInstanceUID {series_uid} (found: {known})")
    patients = sorted({s.patient for s in series})
    if len(patients) > 1:  # a parent of several patients' exports: which one is not ours to guess
        shown = listed([f"'{p}'" for p in patients], 4)
        raise NephrosegInputError(
            folder,
            f"holds series of {len(patients)} patients ({shown}): give one patient's folder, "
            "or a folder of patient folders to predict",
        )
    largest = max(s.slices for s in series)
    best = [s for s in series if s.slices == largest]
    if len(best) > 1:
        listing = "; ".join(f"{s.uid} '{s.description}' {s.modality} {s.slices} slices" for s in best)
        raise NephrosegInputError(
            folder,
            f"several series could be the CT: {listing}; move the others out of the folder, or pick one with "
            f"`nephroseg convert {folder} CT.nii.gz --series-uid UID`",
        )
    return best[0]


def read_dicom_series(folder: str | Path, series_uid: str | None = None) -> Volume:
    """The chosen series as a canonical ``Volume`` of HU (float32)."""
    folder = Path(folder)
    series = choose_ct_series(folder, series_uid)
    if series.multiframe:
        array, affine = _read_enhanced(folder, series)
    else:
        datasets, files, affine = series_geometry(folder, series)
        array = np.stack([_hounsfield(folder, path, ds) for path, ds in zip(files, datasets, strict=True)])
    return volume_from_array(array, affine, path=folder)


def choose_ct_series(folder: Path, series_uid: str | None = None) -> Series:
    series = choose_series(folder, list_series(folder), series_uid)
    if series.modality.upper() != "CT":
        raise NephrosegInputError(
            folder, f"series {series.uid} is not CT (Modality {series.modality or 'missing'}): refused"
        )
    return series


def series_summary(folder: Path) -> dict[str, str]:
    """What a report names of the CT series read from ``folder`` (nothing identifying the patient):
    study date, series description and UID, scanner, slices, thickness and kernel."""
    series = choose_ct_series(folder)
    header = pydicom.dcmread(series.files[0], stop_before_pixels=True)
    date = str(header.get("StudyDate", ""))
    scanner = " ".join(str(header.get(k, "")) for k in ("Manufacturer", "ManufacturerModelName")).strip()
    kernel = header.get("ConvolutionKernel", "")
    return {
        "study date": f"{date[:4]}-{date[4:6]}-{date[6:]}" if len(date) == 8 else date,
        "series": series.description,
        "series UID": series.uid,
        "scanner": scanner,
        "slices": str(series.slices),
        "slice thickness mm": str(header.get("SliceThickness", "")),
        "kernel": "\\".join(kernel) if isinstance(kernel, pydicom.multival.MultiValue) else str(kernel),
    }


def series_geometry(folder: Path, series: Series) -> tuple[list[pydicom.Dataset], list[Path], np.ndarray]:
    """A single-frame series' datasets and files in stacking order and its affine (stored slice,
    row, column → RAS mm), after every check the headers allow."""
    datasets, files = sorted_slices(series)
    _check_same_frame(folder, datasets, files)
    orientation = np.array(datasets[0].ImageOrientationPatient, dtype=np.float64)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.array([ds.ImagePositionPatient for ds in datasets], dtype=np.float64)
    pixel_spacing = [float(v) for v in datasets[0].PixelSpacing]  # (between rows, between columns)
    step = _checked_step(folder, positions, normal, files, min(pixel_spacing))
    lps = np.eye(4)
    lps[:3, 0] = normal * step
    lps[:3, 1] = col_dir * pixel_spacing[0]
    lps[:3, 2] = row_dir * pixel_spacing[1]
    lps[:3, 3] = positions[0]
    return datasets, files, LPS_TO_RAS @ lps


def _read_enhanced(folder: Path, series: Series) -> tuple[np.ndarray, np.ndarray]:
    """An enhanced (multi-frame) CT: highdicom sorts its frames into a volume, checks that they are
    evenly stacked and applies the rescale to HU."""
    import highdicom as hd  # slow to import: only for enhanced images and DICOM-SEG

    if len(series.files) > 1:
        raise NephrosegInputError(
            folder, f"series {series.uid} is split over {len(series.files)} multi-frame files: not supported"
        )
    path = series.files[0]
    try:
        volume = hd.imread(path).get_volume()
    except Exception as err:  # highdicom and the pixel decoders raise many types
        raise NephrosegInputError(
            folder, f"{path.name}: its frames do not form one regular 3D volume ({type(err).__name__}: {err})"
        ) from err
    array = np.asarray(volume.array, dtype=np.float32)
    if array.ndim != 3:
        raise NephrosegInputError(
            folder, f"{path.name}: frames of shape {array.shape[1:]} are not grey slices"
        )
    return array, LPS_TO_RAS @ np.asarray(volume.affine, dtype=np.float64)


def sorted_slices(series: Series) -> tuple[list[pydicom.Dataset], list[Path]]:
    """The series' datasets and files in stacking order (by position along the slice normal)."""
    datasets = [pydicom.dcmread(path) for path in series.files]
    orientation = np.array(datasets[0].ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    along = np.array([ds.ImagePositionPatient for ds in datasets], dtype=np.float64) @ normal
    order = np.argsort(along, kind="stable")
    return [datasets[i] for i in order], [series.files[i] for i in order]


def _check_same_frame(folder: Path, datasets: list[pydicom.Dataset], files: list[Path]) -> None:
    """Every slice of one size, pixel spacing and orientation: a stack of them is one volume."""
    first = datasets[0]
    for key in FRAME_KEYS:
        if first.get(key) is None:
            raise NephrosegInputError(folder, f"{files[0].name}: no {key}, the slice cannot be placed")
    for ds, path in zip(datasets[1:], files[1:], strict=True):
        for key in FRAME_KEYS:
            value, expected = ds.get(key), first.get(key)
            if value is None or not np.allclose(
                np.asarray(value, float), np.asarray(expected, float), atol=1e-4
            ):
                raise NephrosegInputError(
                    folder,
                    f"{path.name}: {key} {value} differs from {files[0].name}'s {expected} "
                    "(the slices of one series must match)",
                )


def _checked_step(
    folder: Path, positions: np.ndarray, normal: np.ndarray, files: list[Path], pixel_mm: float
) -> float:
    """The slice step, after refusing duplicated or missing slices, uneven steps and a gantry tilt
    whose drift the volume's affine (one step along the slice normal) would misplace by more than
    ``TILT_TOLERANCE_PIXELS`` of a pixel at the far end."""
    if len(positions) < 2:
        raise NephrosegInputError(folder, "the series has a single slice: not a 3D volume")
    along = positions @ normal
    steps = np.diff(along)
    duplicates = np.flatnonzero(steps < 1e-3)
    if duplicates.size:
        i = int(duplicates[0])
        raise NephrosegInputError(
            folder, f"duplicated slice position {along[i]:.2f} mm ({files[i].name} and {files[i + 1].name})"
        )
    median = float(np.median(steps))
    gaps = np.flatnonzero(steps > GAP_FACTOR * median)
    if gaps.size:
        i = int(gaps[0])
        raise NephrosegInputError(
            folder,
            f"missing slice(s): a gap of {steps[i]:.2f} mm between {along[i]:.2f} and {along[i + 1]:.2f} mm "
            f"(the usual step is {median:.2f} mm)",
        )
    if float(steps.max() - steps.min()) > UNEVEN_TOLERANCE * median:
        raise NephrosegInputError(
            folder, f"uneven slice spacing: steps from {steps.min():.3f} to {steps.max():.3f} mm"
        )
    drift = positions - positions[0] - np.outer(along - along[0], normal)
    worst = float(np.linalg.norm(drift, axis=1).max())
    if worst > TILT_TOLERANCE_PIXELS * pixel_mm:
        degrees = float(np.degrees(np.arctan2(worst, along[-1] - along[0])))
        raise NephrosegInputError(
            folder,
            f"gantry tilt: slice origins drift {worst:.2f} mm ({degrees:.2f}°) off the slice normal over the "
            f"scan, more than half a {pixel_mm:.3g} mm pixel (refused: the volume would be misplaced)",
        )
    return median


def _hounsfield(folder: Path, path: Path, ds: pydicom.Dataset) -> np.ndarray:
    try:
        pixels = ds.pixel_array
    except Exception as err:  # decoders raise many types (missing plugin, bad stream)
        syntax = getattr(ds.file_meta, "TransferSyntaxUID", "unknown")
        raise NephrosegInputError(
            folder, f"{path.name}: pixel data cannot be decoded (transfer syntax {syntax}: {err})"
        ) from err
    slope = float(ds.get("RescaleSlope", 1.0))
    intercept = float(ds.get("RescaleIntercept", 0.0))
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
