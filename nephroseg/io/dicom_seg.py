"""Predictions as DICOM Segmentation objects referencing the source CT series (highdicom), so a
PACS viewer shows them on the scan; and DICOM-SEG read back to a label map on the series' grid.

Two segments, coded with SNOMED CT as the DICOM standard's segmentation context groups suggest:
1 "Kidney" (category Organ, type Kidney), 2 "Kidney tumor" (category Morphologically Abnormal
Structure, type Neoplasm), both AUTOMATIC, algorithm "nephroseg".
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from nephroseg.errors import NephrosegInputError
from nephroseg.io.atomic import atomic_path
from nephroseg.io.dicom import choose_series, list_series, sorted_slices

SEGMENTS = (
    ("Kidney", codes.SCT.Organ, codes.SCT.Kidney),
    ("Kidney tumor", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm),
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
    """``labels`` (slices, rows, columns) in the series' stacking order, values 0, 1, 2."""
    series_folder, target = Path(series_folder), Path(target)
    series = choose_series(series_folder, list_series(series_folder), series_uid)
    datasets, _ = sorted_slices(series)
    if labels.shape != (len(datasets), int(datasets[0].Rows), int(datasets[0].Columns)):
        raise NephrosegInputError(target, f"label shape {labels.shape} does not match the series")
    algorithm = hd.AlgorithmIdentificationSequence(
        name="nephroseg", version=_version(), family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=category,
            segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for number, (label, category, kind) in enumerate(SEGMENTS, start=1)
    ]
    try:
        seg = _segmentation(datasets, labels, descriptions)
    except (AttributeError, ValueError, TypeError) as err:
        raise NephrosegInputError(
            series_folder, f"cannot reference this series in a DICOM-SEG ({type(err).__name__}: {err})"
        ) from err
    with atomic_path(target) as tmp:
        seg.save_as(tmp)
    return target


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


def read_dicom_seg(path: str | Path, series_folder: str | Path, series_uid: str | None = None) -> np.ndarray:
    """The label map (slices, rows, columns) in the series' stacking order."""
    path, series_folder = Path(path), Path(series_folder)
    try:
        seg = hd.seg.segread(path)
    except Exception as err:  # pydicom/highdicom raise many types for a non-SEG file
        raise NephrosegInputError(path, f"not a readable DICOM Segmentation ({type(err).__name__})") from err
    datasets, _ = sorted_slices(choose_series(series_folder, list_series(series_folder), series_uid))
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True)
    return np.asarray(pixels, dtype=np.uint8)
