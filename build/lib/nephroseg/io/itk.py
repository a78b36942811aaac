"""NRRD and MetaImage (.nrrd, .nhdr, .mha, .mhd) through SimpleITK, with the same geometry rules as
NIfTI: read into a canonical ``Volume``; write a result on the source grid.

SimpleITK describes a grid by origin, spacing and a direction matrix in LPS; the affine here is
RAS+ (x and y negated), the convention of the rest of the package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nephroseg.errors import NephrosegInputError
from nephroseg.io.atomic import atomic_path
from nephroseg.io.volume import LPS_TO_RAS

READ_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
WRITE_SUFFIXES = (".nrrd", ".mha")  # single-file formats: an atomic rename covers the whole output


def is_itk(path: str | Path) -> bool:
    return str(path).lower().endswith(READ_SUFFIXES)


def _affine_of(image: sitk.Image) -> np.ndarray:
    """(slice, row, column) index → RAS mm, for the array ``GetArrayFromImage`` returns (z, y, x)."""
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.array(image.GetSpacing(), dtype=np.float64)
    lps = np.eye(4)
    lps[:3, :3] = (direction * spacing)[:, ::-1]  # columns x, y, z → array axes z, y, x
    lps[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ lps


def read_itk(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The array (z, y, x) and its RAS affine; header faults raise ``NephrosegInputError``."""
    path = Path(path)
    if not path.is_file():
        raise NephrosegInputError(path, "file not found")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise NephrosegInputError(path, f"not a readable NRRD/MetaImage file ({first})") from err
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise NephrosegInputError(
            path,
            f"is {image.GetDimension()}D with {image.GetNumberOfComponentsPerPixel()} components, "
            "expected a 3D scalar volume",
        )
    return sitk.GetArrayFromImage(image), _affine_of(image)


def write_itk(array: np.ndarray, affine: np.ndarray, path: str | Path) -> Path:
    """Write ``array`` (axes as ``affine`` describes them) as .nrrd or .mha, atomically."""
    path = Path(path)
    if not str(path).lower().endswith(WRITE_SUFFIXES):
        raise NephrosegInputError(path, f"output must end in one of {', '.join(WRITE_SUFFIXES)}")
    lps = np.linalg.inv(LPS_TO_RAS) @ np.asarray(affine, dtype=np.float64)
    columns = lps[:3, :3][:, ::-1]  # array axes z, y, x → image axes x, y, z
    spacing = np.linalg.norm(columns, axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in (columns / spacing).ravel()))
    image.SetOrigin(tuple(float(v) for v in lps[:3, 3]))
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return path
