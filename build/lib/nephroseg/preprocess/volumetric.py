"""The cached stages of 3D preprocessing: raw case → case fingerprint → resampled, body-cropped arrays.

Each stage is a folder of ``.npy``/``.json`` files under the cache, named by the case and a hash of
the settings and of the source files' size and modification time: a re-run reuses it, a change of
settings or data builds a new one. Every file is written atomically and ``meta.json`` last, so an
entry is either complete or ignored. HU are stored as int16 on the target grid; normalization is
applied when patches are drawn (its statistics come from the training cases' fingerprint).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nephroseg.io import KitsCase, atomic_path, atomic_write_text, load_case
from nephroseg.preprocess.fingerprint import CaseFingerprint, sample_foreground
from nephroseg.preprocess.resample import (
    body_box,
    box_bounds,
    resample_image,
    resample_label,
    resampled_shape,
)

CACHE_VERSION = 1
POINTS_PER_CLASS = 10_000  # voxel positions kept per class for foreground oversampling (as nnU-Net)


@dataclass(frozen=True)
class VolumetricSettings:
    """Everything that changes the prepared arrays (and so the cache key)."""

    target_spacing: tuple[float, float, float]
    label_resampling: str = "linear"
    crop_to_body: bool = True
    body_threshold_hu: float = -500.0
    anisotropy_threshold: float = 3.0


@dataclass(eq=False)
class VolumeCase:
    """HU (int16) and labels (uint8) on the target grid, cropped to the body; (z, y, x)."""

    case_id: str
    hu: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, float, float]
    tumor_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    kidney_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))


def _stamp(path: Path | None) -> list:
    if path is None:
        return []
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def cache_key(case: KitsCase, settings: object) -> str:
    payload = json.dumps(
        [CACHE_VERSION, repr(settings), _stamp(case.imaging), _stamp(case.segmentation)], default=str
    )
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)


def _class_points(label: np.ndarray, value: int, seed: int) -> np.ndarray:
    points = np.argwhere(label == value)
    if len(points) > POINTS_PER_CLASS:
        points = points[np.random.default_rng(seed).choice(len(points), POINTS_PER_CLASS, replace=False)]
    return points.astype(np.int64)


def case_fingerprint(
    case: KitsCase, body_threshold_hu: float = -500.0, cache_dir: Path | None = None
) -> CaseFingerprint:
    """Spacing, body-cropped shape and sampled foreground intensities of one labelled case (cached)."""
    folder = None
    if cache_dir is not None:
        folder = Path(cache_dir) / "fingerprint" / f"{case.case_id}-{cache_key(case, body_threshold_hu)}"
        if (folder / "meta.json").exists():
            meta = json.loads((folder / "meta.json").read_text())
            return CaseFingerprint(
                case.case_id, tuple(meta["spacing"]), tuple(meta["shape"]), np.load(folder / "foreground.npy")
            )
    image, label = load_case(case)
    box = body_box(image.array, body_threshold_hu)
    shape = tuple(int(s.indices(n)[1] - s.indices(n)[0]) for s, n in zip(box, image.array.shape, strict=True))
    foreground = sample_foreground(image.array, label.array) if label is not None else np.zeros(0, np.float32)
    result = CaseFingerprint(case.case_id, image.spacing, shape, foreground)  # type: ignore[arg-type]
    if folder is not None:
        _save_npy(folder / "foreground.npy", foreground)
        atomic_write_text(folder / "meta.json", json.dumps({"spacing": image.spacing, "shape": shape}))
    return result


def prepare_volume_arrays(
    case_id: str, hu: np.ndarray, label: np.ndarray | None, spacing, settings: VolumetricSettings
) -> tuple[VolumeCase, dict]:
    """Crop to the body, resample to the target spacing; returns the case and its metadata."""
    box = body_box(hu, settings.body_threshold_hu) if settings.crop_to_body else (slice(None),) * 3
    crop = hu[box]
    target = tuple(settings.target_spacing)
    out_shape = resampled_shape(crop.shape, spacing, target)
    image = resample_image(
        crop, spacing, target, threshold=settings.anisotropy_threshold, out_shape=out_shape
    )
    hu16 = np.clip(np.rint(image), -32768, 32767).astype(np.int16)
    lab = None
    if label is not None:
        lab = resample_label(
            label[box],
            spacing,
            target,
            method=settings.label_resampling,
            threshold=settings.anisotropy_threshold,
            out_shape=out_shape,
        )
    seed = int(hashlib.sha1(case_id.encode()).hexdigest()[:8], 16)
    tumor = _class_points(lab, 2, seed) if lab is not None else np.zeros((0, 3), np.int64)
    kidney = _class_points(lab, 1, seed) if lab is not None else np.zeros((0, 3), np.int64)
    meta = {
        "spacing": list(target),
        "source_spacing": list(spacing),
        "source_shape": list(hu.shape),
        "body_box": box_bounds(box, hu.shape),
        "has_label": lab is not None,
    }
    return VolumeCase(case_id, hu16, lab, target, tumor, kidney), meta  # type: ignore[arg-type]


def prepare_volume_case(
    case: KitsCase, settings: VolumetricSettings, cache_dir: Path | None = None
) -> VolumeCase:
    """The case on the target grid, from the cache when the source files and settings are unchanged."""
    folder = None
    if cache_dir is not None:
        folder = Path(cache_dir) / "volumetric" / f"{case.case_id}-{cache_key(case, settings)}"
        if (folder / "meta.json").exists():
            meta = json.loads((folder / "meta.json").read_text())
            label = np.load(folder / "label.npy", mmap_mode="r") if meta["has_label"] else None
            return VolumeCase(
                case.case_id,
                np.load(folder / "hu.npy", mmap_mode="r"),
                label,
                tuple(meta["spacing"]),  # type: ignore[arg-type]
                np.load(folder / "tumor_points.npy"),
                np.load(folder / "kidney_points.npy"),
            )
    image, label = load_case(case)
    prepared, meta = prepare_volume_arrays(
        case.case_id, image.array, label.array if label is not None else None, image.spacing, settings
    )
    if folder is not None:
        _save_npy(folder / "hu.npy", prepared.hu)
        if prepared.label is not None:
            _save_npy(folder / "label.npy", prepared.label)
        _save_npy(folder / "tumor_points.npy", prepared.tumor_points)
        _save_npy(folder / "kidney_points.npy", prepared.kidney_points)
        atomic_write_text(folder / "meta.json", json.dumps(meta))  # last: marks the entry complete
    return prepared
