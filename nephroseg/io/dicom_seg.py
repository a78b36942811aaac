"""Predictions as DICOM Segmentation objects referencing the source CT series (highdicom), so a
PACS viewer shows them on the scan; and DICOM-SEG read back to a label map on the series' grid.

Two segments, coded with SNOMED CT as the DICOM standard's segmentation context groups suggest:
1 "Kidney" (category Organ, type Kidney), 2 "Kidney tumor" (category Morphologically Abnormal
Structure, type Neoplasm), both AUTOMATIC, algorithm "nephroseg".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from nephroseg.errors import NephrosegInputError
from nephroseg.io.atomic import atomic_path
from nephroseg.io.dicom import choose_series, list_series, sorted_slices
from nephroseg.io.volume import LPS_TO_RAS

SEGMENTS = (
    ("Kidney", codes.SCT.Organ, codes.SCT.Kidney),
    ("Kidney tumor", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm),
)

# What a DICOM-SEG copies from its CT. Type 1: without them nothing can reference the CT. Type 2: in
# every conformant CT but possibly empty, and written empty into the CT's datasets when deleted.
REFERENCED_TYPE1 = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "FrameOfReferenceUID",
)
PATIENT_AND_STUDY_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def check_seg_source(series_folder: str | Path, series_uid: str | None = None) -> None:
    """Refuse, before any prediction, a series a DICOM-SEG cannot reference (a UID it needs is gone)."""
    series_folder = Path(series_folder)
    series = choose_series(series_folder, list_series(series_folder), series_uid)
    header = pydicom.dcmread(series.files[0], stop_before_pixels=True)
    missing = [keyword for keyword in REFERENCED_TYPE1 if not str(header.get(keyword, "") or "")]
    if missing:
        raise NephrosegInputError(
            series.files[0], f"has no {', '.join(missing)}, which a DICOM-SEG needs to reference the CT"
        )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nephroseg")
    except PackageNotFoundError:
        return "0"


def write_dicom_seg(
    labels: np.ndarray, series_folder: str | Path, target: str | Path, series_uid: str | None = None
) -> Path:
    """``labels`` (slices, rows, columns) in the series' stacking order (for an enhanced CT, the
    order of its volume as ``read_dicom_series`` stacks it), values 0, 1, 2."""
    series_folder, target = Path(series_folder), Path(target)
    series = choose_series(series_folder, list_series(series_folder), series_uid)
    if series.multiframe:
        datasets = [pydicom.dcmread(series.files[0])]
        labels = _labels_per_frame(labels, datasets[0], target)
    else:
        datasets, _ = sorted_slices(series)
        if labels.shape != (len(datasets), int(datasets[0].Rows), int(datasets[0].Columns)):
            raise NephrosegInputError(target, f"label shape {labels.shape} does not match the series")
    for dataset in datasets:
        for keyword in PATIENT_AND_STUDY_TYPE2:  # deleted by some anonymizers; the standard allows empty
            if keyword not in dataset:
                setattr(dataset, keyword, "")
    try:
        seg = _segmentation(datasets, labels, segment_descriptions(SEGMENTS, "nephroseg", _version()))
    except (AttributeError, ValueError, TypeError) as err:
        raise NephrosegInputError(
            series_folder, f"cannot reference this series in a DICOM-SEG ({type(err).__name__}: {err})"
        ) from err
    with atomic_path(target) as tmp:
        seg.save_as(tmp)
    return target


def segment_descriptions(
    segments: Sequence[tuple[str, hd.sr.CodedConcept, hd.sr.CodedConcept]], algorithm: str, version: str
) -> list[hd.seg.SegmentDescription]:
    """Segments 1, 2, … as (label, category, type), found automatically by ``algorithm``."""
    identification = hd.AlgorithmIdentificationSequence(
        name=algorithm, version=version, family=codes.cid7162.ArtificialIntelligence
    )
    return [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=category,
            segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=identification,
        )
        for number, (label, category, kind) in enumerate(segments, start=1)
    ]


def _labels_per_frame(labels: np.ndarray, source: pydicom.Dataset, target: Path) -> np.ndarray:
    """An enhanced CT's label frames in its own frame order: each frame takes the slice of the
    stacked volume at its position (frames need not be stored in stacking order)."""
    image = hd.Image.from_dataset(source, copy=False)
    geometry = image.get_volume_geometry()
    if geometry is None or labels.shape != tuple(geometry.spatial_shape):
        raise NephrosegInputError(target, f"label shape {labels.shape} does not match the enhanced CT")
    to_index = np.linalg.inv(np.asarray(geometry.affine, dtype=np.float64))
    positions = [
        frame.PlanePositionSequence[0].ImagePositionPatient
        for frame in source.PerFrameFunctionalGroupsSequence
    ]
    slices = np.rint([(to_index @ [*map(float, p), 1.0])[0] for p in positions]).astype(int)
    return labels[slices]


def _segmentation(datasets, labels: np.ndarray, descriptions) -> hd.seg.Segmentation:
    return hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=np.asarray(labels, dtype=np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=900,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="nephroseg",
        manufacturer_model_name="nephroseg",
        software_versions=_version(),
        device_serial_number="0",
        series_description="nephroseg kidney and tumor",
        omit_empty_frames=False,
    )


# Segments are matched to KiTS labels by their coded type, else by their label text; tumor words are
# tried first ("renal tumor" is a tumor). Other segments (organs of a multi-organ SEG) are left out.
KIDNEY_CODES = {"64033007", "9846003", "18639004"}  # SCT kidney, right kidney, left kidney
TUMOR_CODES = {"108369006", "4147007", "363346000", "86049000"}  # neoplasm, mass, malignant neoplasm
TUMOR_WORDS = ("tumor", "tumour", "neoplasm", "carcinoma", "mass", "cancer")
KIDNEY_WORDS = ("kidney", "renal")


def read_dicom_seg_volume(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A DICOM Segmentation as a KiTS label map on its own grid: (uint8 array in the SEG's frame
    stacking, RAS affine). Where segments overlap, tumor wins over kidney. A SEG that omits empty
    frames covers only the slices between its first and last segmented frame."""
    path = Path(path)
    try:
        seg = hd.seg.segread(path)
    except Exception as err:  # pydicom/highdicom raise many types for a non-SEG file
        raise NephrosegInputError(path, f"not a readable DICOM Segmentation ({type(err).__name__})") from err
    wanted = kits_label_of_segments(path, seg)
    try:
        volume = seg.get_volume(segment_numbers=list(wanted), combine_segments=False)
    except (ValueError, RuntimeError) as err:
        raise NephrosegInputError(path, f"its frames do not form one regular 3D volume ({err})") from err
    masks = np.asarray(volume.array)
    threshold = 0.5 if np.issubdtype(masks.dtype, np.floating) else 0  # FRACTIONAL: 0..1 after rescale
    labels = np.zeros(masks.shape[:3], dtype=np.uint8)
    for channel, value in enumerate(wanted.values()):  # kidney segments first, tumor last: tumor wins
        labels[masks[..., channel] > threshold] = value
    return labels, LPS_TO_RAS @ np.asarray(volume.affine, dtype=np.float64)


def kits_label_of_segments(path: Path, seg: hd.seg.Segmentation) -> dict[int, int]:
    """Segment number → KiTS label (1 kidney, 2 tumor), tumor segments last so that they win."""
    found: dict[int, int] = {}
    segments = seg.SegmentSequence
    for item in segments:
        codes_ = {str(c.CodeValue) for c in item.get("SegmentedPropertyTypeCodeSequence", [])}
        text = str(item.get("SegmentLabel", "")).lower()
        if codes_ & TUMOR_CODES or any(word in text for word in TUMOR_WORDS):
            found[int(item.SegmentNumber)] = 2
        elif codes_ & KIDNEY_CODES or any(word in text for word in KIDNEY_WORDS):
            found[int(item.SegmentNumber)] = 1
    if not found:
        names = ", ".join(f"{int(i.SegmentNumber)} '{i.get('SegmentLabel', '')}'" for i in segments)
        raise NephrosegInputError(path, f"no kidney or tumor segment among its segments ({names})")
    return dict(sorted(found.items(), key=lambda item: item[1]))
