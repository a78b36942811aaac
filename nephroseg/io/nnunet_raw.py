"""The cohort as an nnU-Net v2 raw dataset and back, so both tools see the same cases.

``DatasetNNN_Name/imagesTr/case_NNNNN_0000.nii.gz`` (channel 0 = CT), ``labelsTr/case_NNNNN.nii.gz``,
``imagesTs/`` for cases without labels, and ``dataset.json``. Files are copied byte for byte (hard
links when on the same file system), so geometry is untouched; only a label stored in another axis
order than its image is rewritten, in the image's (nnU-Net compares the arrays as stored).
nnU-Net's predictions are named ``case_NNNNN.nii.gz``, which ``nephroseg evaluate`` already pairs
with the ground truth.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from nephroseg.errors import NephrosegInputError
from nephroseg.io.atomic import atomic_write_text, link_or_copy
from nephroseg.io.kits import IMAGING_NAME, SEGMENTATION_NAME, check_same_grid, find_cases
from nephroseg.io.volume import read_geometry, read_volume, same_stored_grid, volume_from_array, write_like

LABELS = {"background": 0, "kidney": 1, "tumor": 2}
_IMAGE_NAME = re.compile(r"^(?P<case>.+)_0000\.nii\.gz$")


def dataset_folder_name(dataset_id: int, name: str) -> str:
    if not 1 <= dataset_id <= 999:
        raise NephrosegInputError("--dataset-id", f"must be 1…999, got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9]+", name):
        raise NephrosegInputError("--name", f"letters and digits only (nnU-Net's rule), got '{name}'")
    return f"Dataset{dataset_id:03d}_{name}"


def export_nnunet(
    data_dir: str | Path, raw_root: str | Path, dataset_id: int, name: str, overwrite: bool = False
) -> Path:
    """Write ``raw_root/DatasetNNN_Name``; returns that folder. Every label's grid is checked against
    its image before anything is written. nnU-Net reads arrays as stored, so a label stored in another
    axis order or flipped (which nephroseg reads onto its image) is written in its image's storage;
    the others are linked or copied unchanged. The dataset is built beside the target and moved into
    place when complete: an error or interrupt leaves no half dataset, and an old one (with
    ``overwrite``) is replaced only then."""
    folder = Path(raw_root) / dataset_folder_name(dataset_id, name)
    if folder.exists() and not overwrite:
        raise NephrosegInputError(folder, "exists; pass --overwrite to replace it")
    cases = find_cases(data_dir)
    labelled = [c for c in cases if c.segmentation is not None]
    stored_otherwise = {c.case_id for c in labelled if _label_stored_otherwise(c.imaging, c.segmentation)}
    staging = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted export left
    try:
        for case in cases:
            images = "imagesTr" if case.segmentation is not None else "imagesTs"
            link_or_copy(case.imaging, staging / images / f"{case.case_id}_0000.nii.gz")
            if case.segmentation is None:
                continue
            target = staging / "labelsTr" / f"{case.case_id}.nii.gz"
            if case.case_id in stored_otherwise:
                _write_label_as_image_is_stored(case.imaging, case.segmentation, target)
            else:
                link_or_copy(case.segmentation, target)
        description = {
            "channel_names": {"0": "CT"},
            "labels": LABELS,
            "numTraining": len(labelled),
            "file_ending": ".nii.gz",
            "name": name,
            "description": "KiTS19-layout cohort exported by nephroseg",
        }
        atomic_write_text(staging / "dataset.json", json.dumps(description, indent=1) + "\n")
        _replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _label_stored_otherwise(image: Path, label: Path) -> bool:
    """Whether ``label`` holds its image's voxels in another storage order (refused when it is on
    another grid altogether, naming the file)."""
    image_grid, label_grid = read_geometry(image), read_geometry(label)
    check_same_grid(image, label, *image_grid, *label_grid)
    return not same_stored_grid(image_grid, label_grid)


def _write_label_as_image_is_stored(image: Path, label: Path, target: Path) -> None:
    shape, affine = read_geometry(image)  # its 3D shape (a trailing axis of 1 dropped)
    header = nib.load(image).header  # the header only: the CT's voxels are not read
    like = volume_from_array(np.zeros(shape, np.uint8), affine, header=header, path=image)
    write_like(read_volume(label, label=True).array, like, target)


def _replace_folder(built: Path, folder: Path) -> None:
    """Put the complete ``built`` folder at ``folder``; an existing one is removed only after."""
    retired = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(retired, ignore_errors=True)
    if folder.exists():
        folder.rename(retired)
    built.rename(folder)
    shutil.rmtree(retired, ignore_errors=True)


def import_nnunet(dataset: str | Path, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """Read an nnU-Net v2 raw dataset back into the KiTS layout; returns the case folders."""
    dataset, out_dir = Path(dataset), Path(out_dir)
    if not (dataset / "dataset.json").is_file():
        raise NephrosegInputError(dataset, "no dataset.json: not an nnU-Net raw dataset")
    if not (dataset / "imagesTr").is_dir():
        raise NephrosegInputError(dataset, "no imagesTr folder: not an nnU-Net raw dataset")
    description = json.loads((dataset / "dataset.json").read_text())
    if description.get("file_ending", ".nii.gz") != ".nii.gz":
        raise NephrosegInputError(dataset, f"file_ending {description['file_ending']} is not supported")
    folders = []
    for split in ("imagesTr", "imagesTs"):
        for image in sorted((dataset / split).glob("*_0000.nii.gz")) if (dataset / split).is_dir() else []:
            case_id = _IMAGE_NAME.match(image.name).group("case")
            target = out_dir / case_id
            if (target / IMAGING_NAME).exists() and not overwrite:
                raise NephrosegInputError(target / IMAGING_NAME, "exists; pass --overwrite to replace it")
            _place_fresh(image, target / IMAGING_NAME)
            label = dataset / "labelsTr" / f"{case_id}.nii.gz"
            if split == "imagesTr":
                if not label.is_file():
                    raise NephrosegInputError(label, "missing: every training image needs its label")
                _place_fresh(label, target / SEGMENTATION_NAME)
            folders.append(target)
    if not folders:
        raise NephrosegInputError(dataset / "imagesTr", "holds no *_0000.nii.gz images")
    return folders


def _place_fresh(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    link_or_copy(source, target)
