"""``nephroseg convert``: one volume from any supported format to NIfTI, NRRD or MHA, same grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nephroseg.errors import NephrosegInputError
from nephroseg.io.atomic import refuse_writing_into_source
from nephroseg.io.dicom import read_dicom_series
from nephroseg.io.itk import is_itk
from nephroseg.io.volume import is_nifti, read_volume, write_like


def convert_volume(
    source: str | Path,
    target: str | Path,
    *,
    label: bool = False,
    series_uid: str | None = None,
    overwrite: bool = False,
) -> Path:
    source, target = Path(source), Path(target)
    if not (is_nifti(target) or is_itk(target)):
        raise NephrosegInputError(target, "output must end in .nii.gz, .nii, .nrrd or .mha")
    refuse_writing_into_source(source, target, "it would be replaced by its own conversion")
    if target.exists() and not overwrite:
        raise NephrosegInputError(target, "output exists; pass --overwrite to replace it")
    if not source.exists():
        raise NephrosegInputError(source, "not found")
    if source.is_dir() and series_uid is not None:
        volume = read_dicom_series(source, series_uid)
    else:
        volume = read_volume(source, label=label)
    dtype = np.uint8 if label else np.float32
    return write_like(volume.array, volume, target, dtype=dtype)
