"""The cohort as an nnU-Net v2 raw dataset and back, so both tools see the same cases.

``DatasetNNN_Name/imagesTr/case_NNNNN_0000.nii.gz`` (channel 0 = CT), ``labelsTr/case_NNNNN.nii.gz``,
``imagesTs/`` for cases without labels, and ``dataset.json``. Files are copied byte for byte (hard
links when on the same file system), so geometry is untouched. nnU-Net's predictions are named
``case_NNNNN.nii.gz``, which ``nephroseg evaluate`` already pairs with the ground truth.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from nephroseg.errors import NephrosegInputError
from nephroseg.io.atomic import atomic_write_text, link_or_copy
from nephroseg.io.kits import IMAGING_NAME, SEGMENTATION_NAME, find_cases

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
    """Write ``raw_root/DatasetNNN_Name``; returns that folder."""
    folder = Path(raw_root) / dataset_folder_name(dataset_id, name)
    if folder.exists():
        if not overwrite:
            raise NephrosegInputError(folder, "exists; pass --overwrite to replace it")
        shutil.rmtree(folder)
    cases = find_cases(data_dir)
    labelled = [c for c in cases if c.segmentation is not None]
    for case in cases:
        if case.segmentation is not None:
            link_or_copy(case.imaging, folder / "imagesTr" / f"{case.case_id}_0000.nii.gz")
            link_or_copy(case.segmentation, folder / "labelsTr" / f"{case.case_id}.nii.gz")
        else:
            link_or_copy(case.imaging, folder / "imagesTs" / f"{case.case_id}_0000.nii.gz")
    description = {
        "channel_names": {"0": "CT"},
        "labels": LABELS,
        "numTraining": len(labelled),
        "file_ending": ".nii.gz",
        "name": name,
        "description": "KiTS19-layout cohort exported by nephroseg",
    }
    atomic_write_text(folder / "dataset.json", json.dumps(description, indent=1) + "\n")
    return folder


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
