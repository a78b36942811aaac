"""NIfTI volumes in one canonical orientation, with everything needed to write results back.

Every volume is read into the KiTS19 orientation (axis codes I-P-L: axis 0 runs head to feet, so
``array[z]`` is an axial slice shown the radiological way, anterior up and patient right on the
left). Models, metrics and pictures only ever see that orientation; ``write_like`` puts a result
back into the source file's own orientation, shape, affine and header.
"""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from nephroseg.errors import NephrosegInputError
from nephroseg.io.atomic import atomic_path

CANONICAL_AXCODES: tuple[str, str, str] = ("I", "P", "L")
LABEL_VALUES = (0, 1, 2)  # background, kidney, tumor
NIFTI_SUFFIXES = (".nii", ".nii.gz")
# Voxel sizes outside this range are header faults, not scans (a header in metres gives 0.0008 mm; a
# broken affine 1e6 mm); resampling them would make a one-pixel image or one of billions of pixels.
SPACING_RANGE_MM = (0.01, 100.0)
AFFINE_TOLERANCE_MM = 1e-3  # two grids whose voxels lie this close are one grid (a micrometre)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # DICOM and ITK place voxels in LPS, affines here are RAS+


@dataclass(frozen=True, eq=False)
class SourceGeometry:
    """Where a volume came from: enough to write a result voxel-for-voxel onto the source grid."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    header: nib.Nifti1Header
    axcodes: tuple[str, str, str]
    path: Path | None = None


@dataclass(eq=False)
class Volume:
    """A 3D array in canonical (I, P, L) orientation with its affine (voxel index → mm, RAS+)."""

    array: np.ndarray
    affine: np.ndarray
    source: SourceGeometry

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along (slice, row, column) of ``array``."""
        return spacing_of(self.affine)

    @property
    def stored_grid(self) -> tuple[tuple[int, int, int], np.ndarray]:
        """Shape and affine as the file stores them: what a message about the file should name."""
        return self.source.shape, self.source.affine

    @property
    def name(self) -> str:
        return str(self.source.path) if self.source.path else "<array>"

    def to_source_orientation(self, array: np.ndarray) -> np.ndarray:
        """Reorient a canonical array of this volume's shape back to the source file's axis order."""
        if array.shape[:3] != self.array.shape:
            raise ValueError(f"array shape {array.shape} does not match volume shape {self.array.shape}")
        back = ornt_transform(axcodes2ornt(CANONICAL_AXCODES), axcodes2ornt(self.source.axcodes))
        return apply_orientation(array, back)


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    sizes = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    return (float(sizes[0]), float(sizes[1]), float(sizes[2]))


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def _to_canonical(affine: np.ndarray) -> np.ndarray:
    """The nibabel orientation transform from a stored array's axes to the canonical (I, P, L) ones."""
    stored = io_orientation(np.asarray(affine, dtype=np.float64))
    return ornt_transform(stored, axcodes2ornt(CANONICAL_AXCODES))


def canonical_grid(shape: tuple[int, ...], affine: np.ndarray) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of a stored volume once read into the canonical order, from its header alone.
    Two files holding the same voxels in other axis orders or flips (an image stored I-P-L, its label
    saved R-A-S by a viewer) have the same canonical grid."""
    affine = np.asarray(affine, dtype=np.float64)
    to_canonical = _to_canonical(affine)
    order = np.argsort(to_canonical[:, 0])  # canonical axis k comes from stored axis order[k]
    shape3 = tuple(int(n) for n in shape[:3])
    return tuple(shape3[i] for i in order), affine @ inv_ornt_aff(to_canonical, shape3)  # type: ignore[return-value]


def canonical_shape_and_spacing(
    shape: tuple[int, int, int], affine: np.ndarray
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Shape and voxel size (mm) of a stored volume once read into the canonical (I, P, L) order."""
    canonical_shape, canonical_affine = canonical_grid(shape, affine)
    return canonical_shape, spacing_of(canonical_affine)


def same_stored_grid(
    first: tuple[tuple[int, ...], np.ndarray], second: tuple[tuple[int, ...], np.ndarray]
) -> bool:
    """Whether two (shape, affine) headers store their voxels alike: same shape, same affine to a
    micrometre (``canonical_grid`` compares them as read instead)."""
    return tuple(first[0]) == tuple(second[0]) and np.allclose(first[1], second[1], atol=AFFINE_TOLERANCE_MM)


def volume_from_array(
    array: np.ndarray, affine: np.ndarray, header: nib.Nifti1Header | None = None, path: Path | None = None
) -> Volume:
    """Canonicalize an in-memory array given in the orientation its affine describes."""
    affine = np.asarray(affine, dtype=np.float64)
    axcodes = tuple(nib.aff2axcodes(affine))
    canonical = apply_orientation(array, _to_canonical(affine))
    _, canonical_affine = canonical_grid(array.shape, affine)
    if header is None:
        header = nib.Nifti1Image(np.zeros((1, 1, 1), np.uint8), affine).header
    source = SourceGeometry(
        shape=tuple(int(s) for s in array.shape),
        affine=affine,
        header=header.copy(),
        axcodes=axcodes,
        path=path,
    )
    return Volume(c_order(canonical), canonical_affine, source)


def c_order(array: np.ndarray, rows: int = 16) -> np.ndarray:
    """A C-contiguous copy of any view (NIfTI data is Fortran-ordered), made a band of ``rows`` along
    axis 1 at a time: numpy's one-shot copy of a transposed 512×512×157 volume misses the cache on
    every voxel and takes ~1 s; the bands take ~0.15 s. An axis of length 1 counts as contiguous in
    numpy whatever its stride, but torch refuses a negative one (a single-slice volume flipped into
    the canonical orientation), so such a view is copied too."""
    if array.flags.c_contiguous and min(array.strides, default=0) >= 0:
        return array
    out = np.empty(array.shape, array.dtype)
    if array.ndim < 2:
        out[...] = array
        return out
    for start in range(0, array.shape[1], rows):
        out[:, start : start + rows] = array[:, start : start + rows]
    return out


def _load_image(path: Path) -> nib.Nifti1Image:
    if not path.exists():
        raise NephrosegInputError(path, "file not found")
    if path.is_dir():
        raise NephrosegInputError(path, "is a folder, expected a NIfTI file (.nii or .nii.gz)")
    if path.stat().st_size == 0:
        raise NephrosegInputError(path, "file is empty (0 bytes)")
    try:
        with _quiet_nibabel():
            image = nib.load(path)
    except (
        nib.filebasedimages.ImageFileError,
        OSError,
        EOFError,
        zlib.error,
        gzip.BadGzipFile,
        ValueError,
    ) as err:
        raise NephrosegInputError(path, f"not a readable NIfTI image ({type(err).__name__}: {err})") from err
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise NephrosegInputError(path, f"unsupported image type {type(image).__name__}, expected NIfTI")
    _check_stored_pixdim(path, image)
    return image


@contextlib.contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """nibabel logs the header fixes it makes (e.g. 'pixdim[1,2,3] should be non-zero') to stderr;
    the ones that matter are refused by the checks below with one clear line instead."""
    logger = nib.imageglobals.logger
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


def _check_stored_pixdim(path: Path, image: nib.Nifti1Image) -> None:
    """When no sform is set the affine is built from ``pixdim``, which nibabel silently sets to 1 mm
    where the file stores 0: read the header as stored and refuse a zero voxel size."""
    if int(image.header["sform_code"]) > 0:
        return
    with nib.openers.ImageOpener(path) as stream:
        stored = type(image.header).from_fileobj(stream, check=False)
    pixdim = np.asarray(stored["pixdim"][1:4], dtype=np.float64)
    if not np.all(np.isfinite(pixdim)) or np.any(np.abs(pixdim) <= 1e-6):
        raise NephrosegInputError(
            path, f"voxel spacing (pixdim) {tuple(float(v) for v in pixdim)} has a zero axis"
        )


def _checked_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    squeezed = list(shape)
    while len(squeezed) > 3 and squeezed[-1] == 1:
        squeezed.pop()
    if len(squeezed) != 3:
        raise NephrosegInputError(path, f"is {len(shape)}D with shape {tuple(shape)}, expected a 3D volume")
    if min(squeezed) == 0:
        raise NephrosegInputError(path, f"is empty: shape {tuple(shape)} has a zero-length axis")
    return (squeezed[0], squeezed[1], squeezed[2])


def _checked_affine(path: Path, affine: np.ndarray) -> None:
    if not np.all(np.isfinite(affine)):
        raise NephrosegInputError(path, "affine contains NaN or Inf")
    spacing = spacing_of(affine)
    if min(spacing) <= 1e-6:
        raise NephrosegInputError(
            path, f"voxel spacing {tuple(round(s, 6) for s in spacing)} has a zero axis"
        )
    low, high = SPACING_RANGE_MM
    if min(spacing) < low or max(spacing) > high:
        raise NephrosegInputError(
            path,
            f"voxel spacing {tuple(float(f'{s:.4g}') for s in spacing)} mm is outside the plausible "
            f"range {low:g} to {high:g} mm (a header in metres, or a broken affine?)",
        )
    if abs(np.linalg.det(affine[:3, :3])) <= 1e-12:
        raise NephrosegInputError(path, "affine is singular (axes are not independent)")


def _read_data(path: Path, image: nib.Nifti1Image, as_label: bool) -> np.ndarray:
    try:
        if path.name.lower().endswith(".gz"):
            # One decompression of the whole stream, trailer included: nibabel alone reads exactly the
            # bytes the voxels take and stops before the gzip trailer, so a damaged stream could
            # decode to wrong voxels without a word; gzip.decompress checks the CRC and length.
            image = type(image).from_bytes(gzip.decompress(path.read_bytes()))
        if as_label:
            data = np.asanyarray(image.dataobj)
        else:
            data = image.get_fdata(dtype=np.float32, caching="unchanged")
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as err:
        raise NephrosegInputError(
            path, f"image data cannot be read, the file is truncated or corrupt ({err})"
        ) from err
    return np.asarray(data)


def _check_finite(path: Path, data: np.ndarray) -> None:
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data)
        if bad.any():
            n_nan = int(np.isnan(data).sum())
            raise NephrosegInputError(
                path, f"contains {n_nan} NaN and {int(bad.sum()) - n_nan} infinite voxels"
            )


def _as_label_array(path: Path, data: np.ndarray) -> np.ndarray:
    if np.issubdtype(data.dtype, np.floating) and not np.all(data == np.round(data)):
        raise NephrosegInputError(path, "label map has non-integer values")
    if data.min() < 0 or data.max() > max(LABEL_VALUES):
        values = np.unique(data[(data < 0) | (data > max(LABEL_VALUES))])
        shown = ", ".join(str(v) for v in values[:8].tolist())
        hint = ""
        if set(values.tolist()) == {3}:
            hint = (
                " (KiTS21/23 label cysts 3; the KiTS19 task counts them as kidney: `nephroseg import-kits`)"
            )
        elif values.min() < 0 or len(values) > 8:
            hint = " (an image given where a label map belongs?)"
        raise NephrosegInputError(path, f"label values outside {{0, 1, 2}}: {shown}{hint}")
    return data.astype(np.uint8, copy=False)


def read_volume(path: str | Path, *, label: bool = False, on_grid_of: Volume | None = None) -> Volume:
    """Read a volume (NIfTI; NRRD, MetaImage or a DICOM series folder through ``_read_other_format``)
    into canonical orientation, refusing anything a model should not see.

    ``label=True`` reads a KiTS label map (uint8 with values in {0, 1, 2}); otherwise intensities are
    read as float32 with the header's slope and intercept applied. A DICOM Segmentation file is read
    as a label map too; one that omits empty frames covers only part of its CT, so ``on_grid_of``
    (the CT's volume) places it on that grid. Other label files must match a grid as stored.
    """
    path = Path(path)
    if path.is_dir() or is_itk_file(path) or is_single_dicom_file(path):
        return _read_other_format(path, label, on_grid_of)
    image = _load_image(path)
    shape = _checked_shape(path, image.shape)
    affine = np.asarray(image.affine, dtype=np.float64)
    _checked_affine(path, affine)
    data = _read_data(path, image, as_label=label).reshape(shape)
    _check_finite(path, data)
    if label:
        data = _as_label_array(path, data)
    return volume_from_array(data, affine, header=image.header, path=path)


def is_itk_file(path: Path) -> bool:
    from nephroseg.io.itk import is_itk

    return is_itk(path)


def is_single_dicom_file(path: Path) -> bool:
    from nephroseg.io.dicom import is_dicom_file

    return path.is_file() and not is_nifti(path) and is_dicom_file(path)


def _read_other_format(path: Path, label: bool, on_grid_of: Volume | None = None) -> Volume:
    """A DICOM series folder, a DICOM Segmentation or an NRRD / MetaImage file, under the same
    checks as NIfTI."""
    segmentation = False
    if path.is_dir():
        from nephroseg.io.dicom import read_dicom_series

        if label:
            raise NephrosegInputError(
                path, "is a folder; a label map is one file (NIfTI, NRRD, MetaImage or DICOM-SEG)"
            )
        volume = read_dicom_series(path)
        data, affine = volume.to_source_orientation(volume.array), volume.source.affine
    elif is_single_dicom_file(path):
        if not label:
            raise NephrosegInputError(
                path,
                "one DICOM file is not a CT volume: give the folder of its series "
                "(a DICOM Segmentation file is read where a label map is asked for)",
            )
        from nephroseg.io.dicom_seg import read_dicom_seg_volume

        data, affine = read_dicom_seg_volume(path)
        segmentation = True
    else:
        from nephroseg.io.itk import read_itk

        data, affine = read_itk(path)
    shape = _checked_shape(path, data.shape)
    _checked_affine(path, affine)
    data = data.reshape(shape) if label else data.reshape(shape).astype(np.float32, copy=False)
    _check_finite(path, data)
    if label:
        data = _as_label_array(path, data)
    volume = volume_from_array(data, affine, path=path)
    if on_grid_of is not None and segmentation:
        return place_on_grid(volume, on_grid_of, path)
    return volume


def place_on_grid(volume: Volume, grid: Volume, path: Path) -> Volume:
    """``volume``'s voxels pasted into an empty label map on ``grid``'s grid, when they are a block of
    it: the same spacing and directions, the origin on one of its voxels (to a micrometre)."""
    block = block_in_grid(volume, grid, path)
    placed = np.zeros(grid.array.shape, dtype=volume.array.dtype)
    placed[block] = volume.array
    return Volume(placed, grid.affine.copy(), grid.source)


def block_in_grid(volume: Volume, grid: Volume, path: Path) -> tuple[slice, slice, slice]:
    """Where ``volume``'s canonical voxels lie in ``grid``'s, or an error naming ``path``."""
    to_grid = np.linalg.inv(grid.affine) @ volume.affine
    offset = np.round(to_grid[:3, 3]).astype(int)
    shift_mm = float(np.abs(grid.affine[:3, :3] @ (to_grid[:3, 3] - offset)).max())
    if not np.allclose(to_grid[:3, :3], np.eye(3), atol=1e-4) or shift_mm > AFFINE_TOLERANCE_MM:
        raise NephrosegInputError(
            path,
            f"does not lie on the grid of {grid.name} (another voxel size, direction or a "
            f"shift of part of a voxel)",
        )
    stop = offset + np.array(volume.array.shape)
    if (offset < 0).any() or (stop > np.array(grid.array.shape)).any():
        raise NephrosegInputError(path, f"reaches outside the grid of {grid.name}")
    return tuple(slice(int(a), int(b)) for a, b in zip(offset, stop, strict=True))  # type: ignore[return-value]


def read_geometry(path: str | Path) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine from the header alone: a cheap check before the data is read."""
    path = Path(path)
    if path.is_dir() or is_itk_file(path):
        volume = _read_other_format(path, label=False)
        return volume.source.shape, volume.source.affine
    image = _load_image(path)
    shape = _checked_shape(path, image.shape)
    affine = np.asarray(image.affine, dtype=np.float64)
    _checked_affine(path, affine)
    return shape, affine


def write_like(array: np.ndarray, like: Volume, path: str | Path, dtype: np.dtype | type = np.uint8) -> Path:
    """Write a canonical array onto the source grid of ``like``: same shape, axis order, affine and
    qform/sform codes as the file ``like`` was read from. The write is atomic."""
    source = like.source
    data = like.to_source_orientation(np.asarray(array)).astype(dtype, copy=False)
    if is_itk_file(Path(path)):
        from nephroseg.io.itk import write_itk

        return write_itk(data, source.affine, path)
    header = source.header.copy()
    stored_shape = tuple(int(n) for n in header.get_data_shape())
    if stored_shape[:3] == data.shape and all(n == 1 for n in stored_shape[3:]):
        data = data.reshape(stored_shape)  # a trailing axis of 1, read as 3D, is kept: the source's shape
    image = nib.Nifti1Image(data, source.affine, header=header)
    image.set_data_dtype(dtype)
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    image.set_qform(qform if qform is not None else source.affine, code=int(qcode or 0))
    image.set_sform(sform if sform is not None else source.affine, code=int(scode or 0))
    if np.issubdtype(np.dtype(dtype), np.integer):
        image.header.set_slope_inter(1.0, 0.0)
    return write_nifti_image(image, path)


def write_array(array: np.ndarray, affine: np.ndarray, path: str | Path, dtype: np.dtype | type) -> Path:
    """Write an array as stored (no reorientation) with a fresh header; sform 'aligned' as KiTS ships."""
    image = nib.Nifti1Image(np.asarray(array).astype(dtype, copy=False), np.asarray(affine, dtype=np.float64))
    image.set_data_dtype(dtype)
    return write_nifti_image(image, path)


def write_nifti_image(image: nib.Nifti1Image, path: str | Path) -> Path:
    path = Path(path)
    if not is_nifti(path):
        raise NephrosegInputError(path, "output must end in .nii or .nii.gz")
    with atomic_path(path) as tmp:
        nib.save(image, tmp)
    return path
