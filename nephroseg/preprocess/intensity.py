"""CT intensity normalization: the HU window of seed 001 and nnU-Net's foreground z-score."""

from __future__ import annotations

import numpy as np
from monai.transforms import Compose, NormalizeIntensity, ScaleIntensityRange

from nephroseg.recipe import PreprocessSpec

# Value the model sees for air after window normalization; used as the padding value.
WINDOW_FLOOR = -1.0


def intensity_transform(spec: PreprocessSpec) -> Compose:
    """HU → model input. Window: clip to [hu_min, hu_max] and map linearly onto [-1, 1]. Z-score: clip,
    then subtract the training-foreground mean and divide by its std (values stored in the spec)."""
    clip = ScaleIntensityRange(spec.hu_min, spec.hu_max, spec.hu_min, spec.hu_max, clip=True)
    if spec.normalization == "window":
        return Compose([ScaleIntensityRange(spec.hu_min, spec.hu_max, WINDOW_FLOOR, 1.0, clip=True)])
    if spec.zscore_mean is None or spec.zscore_std is None:
        raise ValueError(
            "z-score normalization needs zscore_mean and zscore_std (computed from training cases)"
        )
    return Compose([clip, NormalizeIntensity(subtrahend=spec.zscore_mean, divisor=spec.zscore_std)])


def normalize_hu(hu: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    return np.asarray(intensity_transform(spec)(np.asarray(hu, dtype=np.float32)), dtype=np.float32)


def padding_value(spec: PreprocessSpec) -> float:
    """What air (anything at or below hu_min) becomes after normalization."""
    return float(normalize_hu(np.array([spec.hu_min - 1.0], dtype=np.float32), spec)[0])


def foreground_statistics(hu_values: list[np.ndarray], spec: PreprocessSpec) -> tuple[float, float]:
    """Mean and std of clipped HU over foreground (kidney and tumor) voxels of the training cases."""
    values = np.concatenate([np.clip(v.ravel(), spec.hu_min, spec.hu_max) for v in hu_values if v.size])
    if values.size == 0:
        raise ValueError("no foreground voxels in the training cases: cannot compute z-score statistics")
    return float(values.mean()), float(max(values.std(), 1e-3))
