"""One case through the fixed part of preprocessing: canonical orientation (done by io), in-plane
resampling to the model's spacing, HU kept as int16. Intensity normalization is applied per batch so
that one cache serves every normalization. Prepared cases are cached as .npy files keyed by the
settings and the source file, so re-runs and resumed runs skip the work."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy import ndimage

from nephroseg.errors import NephrosegInputError
from nephroseg.io import KitsCase, Volume, atomic_path, load_case
from nephroseg.preprocess.geometry import inplane_shape, resize_slices
from nephroseg.preprocess.kidney_boxes import kidney_boxes

CACHE_VERSION = 1


@dataclass(eq=False)
class PreparedCase:
    """HU and label on the model's in-plane grid, canonical orientation, shape (Z, H, W)."""

    case_id: str
    hu: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, float, float]
    extra: dict = field(default_factory=dict)

    @cached_property
    def tumor_slices(self) -> np.ndarray:
        return self._slices_where(2)

    @cached_property
    def kidney_slices(self) -> np.ndarray:
        return self._slices_where(1)

    @cached_property
    def tumor_components(self) -> list[np.ndarray]:
        """The slices of each tumor (3D connected component of label 2), one array per tumor."""
        if self.label is None:
            return []
        components, _ = ndimage.label(np.asarray(self.label) == 2)
        slices = []
        for number, found in enumerate(ndimage.find_objects(components), start=1):
            present = (components[found] == number).any(axis=(1, 2))
            slices.append(np.flatnonzero(present) + found[0].start)
        return slices

    def _slices_where(self, minimum: int) -> np.ndarray:
        if self.label is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero((self.label >= minimum).reshape(len(self.label), -1).any(axis=1))


def resample_hu(volume: Volume, spacing_mm: float | None) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(Z, H, W) HU volume → model in-plane grid, float32; returns the new spacing."""
    sz, sy, sx = volume.spacing
    out_hw = inplane_shape(volume.array.shape[1:], (sy, sx), spacing_mm)
    hu = resize_slices(volume.array.astype(np.float32, copy=False), out_hw).numpy()
    new_spacing = (sz, sy * volume.array.shape[1] / out_hw[0], sx * volume.array.shape[2] / out_hw[1])
    return hu, new_spacing


def resample_label(volume: Volume, out_hw: tuple[int, int]) -> np.ndarray:
    return resize_slices(volume.array, out_hw, label=True).numpy()


def prepare_volumes(
    case_id: str, image: Volume, label: Volume | None, spacing_mm: float | None
) -> PreparedCase:
    hu, spacing = resample_hu(image, spacing_mm)
    hu16 = np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
    lab = resample_label(label, hu.shape[1:]) if label is not None else None
    return PreparedCase(case_id, hu16, lab, spacing)


def _cache_key(case: KitsCase, *settings) -> str:
    def stamp(path: Path | None) -> list:
        if path is None:
            return []
        stat = path.stat()
        return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]

    payload = json.dumps([CACHE_VERSION, *settings, stamp(case.imaging), stamp(case.segmentation)])
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def _load_cached(folder: Path, case_id: str) -> PreparedCase | None:
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    hu = np.load(folder / "hu.npy", mmap_mode="r")
    label = np.load(folder / "label.npy", mmap_mode="r") if meta["has_label"] else None
    return PreparedCase(case_id, hu, label, tuple(meta["spacing"]))


def _store(folder: Path, prepared: PreparedCase) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "hu.npy") as tmp:
        np.save(tmp, prepared.hu, allow_pickle=False)
    if prepared.label is not None:
        with atomic_path(folder / "label.npy") as tmp:
            np.save(tmp, prepared.label, allow_pickle=False)
    # meta.json is written last: its presence means the entry is complete.
    with atomic_path(folder / "meta.json") as tmp:
        tmp.write_text(json.dumps({"spacing": prepared.spacing, "has_label": prepared.label is not None}))


def prepare_case(case: KitsCase, spacing_mm: float | None, cache_dir: Path | None = None) -> PreparedCase:
    """Prepared arrays for a case, from the cache when the source files and settings are unchanged."""
    if cache_dir is None:
        return prepare_volumes(case.case_id, *load_case(case), spacing_mm)
    folder = Path(cache_dir) / f"{case.case_id}-{_cache_key(case, spacing_mm)}"
    cached = _load_cached(folder, case.case_id)
    if cached is not None:
        return cached
    prepared = prepare_volumes(case.case_id, *load_case(case), spacing_mm)
    _store(folder, prepared)
    return prepared


def crop_volume(volume: Volume, box: tuple[slice, slice, slice]) -> Volume:
    """The part of a (canonical) volume inside ``box``: same spacing, array only."""
    return replace(volume, array=np.ascontiguousarray(volume.array[box]))


def prepare_kidney_crops(
    case: KitsCase, spacing_mm: float | None, half_width_mm: float, cache_dir: Path | None = None
) -> list[PreparedCase]:
    """A labelled case as the refine stage of a cascade trains on it: one prepared crop per kidney
    (``kidney_boxes`` of the true labels), cut on the source grid and then resampled, so the finer
    grid is paid for the kidney only. Cached like ``prepare_case``."""
    folder = None
    if cache_dir is not None:
        folder = Path(cache_dir) / f"{case.case_id}-{_cache_key(case, spacing_mm, 'kidneys', half_width_mm)}"
        done = folder / "boxes.json"
        if done.exists():
            count = json.loads(done.read_text())["count"]
            loaded = [_load_cached(folder / str(i), f"{case.case_id}-kidney{i}") for i in range(count)]
            return [c for c in loaded if c is not None]
    image, label = load_case(case)
    if label is None:
        raise NephrosegInputError(case.imaging, "a kidney-crop model trains on labelled cases only")
    boxes = kidney_boxes(label.array, label.spacing, half_width_mm)
    crops = [
        prepare_volumes(
            f"{case.case_id}-kidney{i}", crop_volume(image, box), crop_volume(label, box), spacing_mm
        )
        for i, box in enumerate(boxes)
    ]
    if folder is not None:
        for i, crop in enumerate(crops):
            _store(folder / str(i), crop)
        with atomic_path(folder / "boxes.json") as tmp:  # written last: the entry is complete
            tmp.write_text(json.dumps({"count": len(crops)}))
    return crops
