"""One case through the fixed part of preprocessing: canonical orientation (done by io), in-plane
resampling to the model's spacing, HU kept as int16. Intensity normalization is applied per batch so
that one cache serves every normalization. Prepared cases are cached as .npy files keyed by the
settings and the source file, so re-runs and resumed runs skip the work."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from nephroseg.io import KitsCase, Volume, atomic_path, load_case
from nephroseg.preprocess.geometry import inplane_shape, resize_slices

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


def _cache_key(case: KitsCase, spacing_mm: float | None) -> str:
    def stamp(path: Path | None) -> list:
        if path is None:
            return []
        stat = path.stat()
        return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]

    payload = json.dumps([CACHE_VERSION, spacing_mm, stamp(case.imaging), stamp(case.segmentation)])
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def prepare_case(case: KitsCase, spacing_mm: float | None, cache_dir: Path | None = None) -> PreparedCase:
    """Prepared arrays for a case, from the cache when the source files and settings are unchanged."""
    if cache_dir is None:
        return prepare_volumes(case.case_id, *load_case(case), spacing_mm)
    folder = Path(cache_dir) / f"{case.case_id}-{_cache_key(case, spacing_mm)}"
    meta_path = folder / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        hu = np.load(folder / "hu.npy", mmap_mode="r")
        label = np.load(folder / "label.npy", mmap_mode="r") if meta["has_label"] else None
        return PreparedCase(case.case_id, hu, label, tuple(meta["spacing"]))
    prepared = prepare_volumes(case.case_id, *load_case(case), spacing_mm)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "hu.npy") as tmp:
        np.save(tmp, prepared.hu, allow_pickle=False)
    if prepared.label is not None:
        with atomic_path(folder / "label.npy") as tmp:
            np.save(tmp, prepared.label, allow_pickle=False)
    # meta.json is written last: its presence means the entry is complete.
    with atomic_path(meta_path) as tmp:
        tmp.write_text(json.dumps({"spacing": prepared.spacing, "has_label": prepared.label is not None}))
    return prepared
