"""Find volumes by case id in the layouts users bring: KiTS case folders or flat folders of files."""

from __future__ import annotations

import re
from pathlib import Path

from nephroseg.errors import NephrosegInputError
from nephroseg.io.dicom import is_dicom_file, is_dicom_folder
from nephroseg.io.itk import is_itk
from nephroseg.io.kits import CASE_PATTERN, IMAGING_NAME, SEGMENTATION_NAME
from nephroseg.io.volume import is_nifti

_PREDICTION_PREFIX = re.compile(r"^prediction_(\d{5})$")


def case_id_of(path: Path) -> str:
    """'case_00012.nii.gz' → 'case_00012'; KiTS submission names 'prediction_00012.nii.gz' map to the
    same id; any other file keeps its name without the NIfTI suffix."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    match = _PREDICTION_PREFIX.match(name)
    if match:
        return f"case_{match.group(1)}"
    if f"{name}.nii.gz" in (IMAGING_NAME, SEGMENTATION_NAME) and CASE_PATTERN.match(path.parent.name):
        return path.parent.name  # case_00012/imaging.nii.gz is case_00012
    return name


def volumes_by_case(folder: str | Path, member: str) -> dict[str, Path]:
    """Map case id → file. ``member`` is the file looked for inside KiTS case folders
    (imaging or segmentation); flat volume files directly in the folder are taken too, and for
    label maps DICOM Segmentation files (``predict --format dicom-seg`` writes ``NAME.dcm``)."""
    folder = Path(folder)
    if not folder.exists():
        raise NephrosegInputError(folder, "not found")
    if folder.is_file():
        return {case_id_of(folder): folder}
    if CASE_PATTERN.match(folder.name) and (folder / member).is_file():
        return {folder.name: folder / member}  # one KiTS case folder: its imaging (or label) only
    if member == IMAGING_NAME and _holds_dicom(folder):
        return {folder.name: folder}  # a DICOM series folder is one volume
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and CASE_PATTERN.match(entry.name) and (entry / member).is_file():
            case_id, path = entry.name, entry / member
        elif entry.is_dir() and member == IMAGING_NAME and is_dicom_folder(entry):
            case_id, path = entry.name, entry  # one patient's DICOM export: its CT series is chosen inside
        elif entry.is_file() and _is_volume_file(entry, member):
            case_id, path = case_id_of(entry), entry
        else:
            continue
        if case_id in found:
            raise NephrosegInputError(
                folder, f"two inputs for case '{case_id}': {found[case_id].name} and {entry.name}"
            )
        found[case_id] = path
    if not found:
        dicom = ", folders of DICOM series" if member == IMAGING_NAME else ", DICOM-SEG *.dcm"
        raise NephrosegInputError(
            folder, f"no volumes found (looked for *.nii.gz, *.nii, *.nrrd, *.mha, case_*/{member}{dicom})"
        )
    return found


def images_by_case(folder: str | Path) -> dict[str, Path]:
    return volumes_by_case(folder, IMAGING_NAME)


def labels_by_case(folder: str | Path) -> dict[str, Path]:
    return volumes_by_case(folder, SEGMENTATION_NAME)


def _is_volume_file(path: Path, member: str) -> bool:
    if is_nifti(path) or is_itk(path):
        return True
    return member == SEGMENTATION_NAME and path.suffix.lower() == ".dcm" and is_dicom_file(path)


def _holds_dicom(folder: Path) -> bool:
    """DICOM files directly in the folder (checked by their 'DICM' preamble, not their names)."""
    return any(entry.is_file() and is_dicom_file(entry) for entry in sorted(folder.iterdir())[:50])
