"""CT intensity normalization: the HU window of seed 001 and nnU-Net's foreground z-score.

A few numpy lines, as nnU-Net writes its CT normalization: the same arithmetic as MONAI's
``ScaleIntensityRange(clip=True)`` and ``NormalizeIntensity(subtrahend, divisor)`` (the tests compare
them), without importing MONAI, whose import loads all its submodules and costs 3–6 s of every
prediction command on a CPU (``docs/benchmarks.md``).
"""

from __future__ import annotations

import numpy as np

from nephroseg.recipe import PreprocessSpec

# Value the model sees for air after window normalization; used as the padding value.
WINDOW_FLOOR = -1.0


def normalize_hu(hu: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """HU → float32 model input. Window: clip to [hu_min, hu_max] and map linearly onto [-1, 1].
    Z-score: clip, then subtract the training-foreground mean and divide by its std (values stored
    in the spec)."""
    if spec.normalization != "window" and (spec.zscore_mean is None or spec.zscore_std is None):
        raise ValueError(
            "z-score normalization needs zscore_mean and zscore_std (computed from training cases)"
        )
    if spec.normalization == "window":
        return _scale_range(hu, spec.hu_min, spec.hu_max, WINDOW_FLOOR, 1.0)
    out = _scale_range(hu, spec.hu_min, spec.hu_max, spec.hu_min, spec.hu_max)
    out -= spec.zscore_mean
    out /= spec.zscore_std
    return out


def _scale_range(hu: np.ndarray, a_min: float, a_max: float, b_min: float, b_max: float) -> np.ndarray:
    """[a_min, a_max] → [b_min, b_max], clipped, in float32 and in MONAI's order of operations, so
    the values are bit for bit those the trained models saw (a reordering changes the last bit of
    ~10 % of them, and training is chaotic)."""
    out = np.asarray(hu, dtype=np.float32) - a_min
    out /= a_max - a_min
    out *= b_max - b_min
    out += b_min
    return np.clip(out, b_min, b_max, out=out)


def padding_value(spec: PreprocessSpec) -> float:
    """What air (anything at or below hu_min) becomes after normalization."""
    return float(normalize_hu(np.array([spec.hu_min - 1.0], dtype=np.float32), spec)[0])


def foreground_statistics(hu_values: list[np.ndarray], spec: PreprocessSpec) -> tuple[float, float]:
    """Mean and std of clipped HU over foreground (kidney and tumor) voxels of the training cases."""
    values = np.concatenate([np.clip(v.ravel(), spec.hu_min, spec.hu_max) for v in hu_values if v.size])
    if values.size == 0:
        raise ValueError("no foreground voxels in the training cases: cannot compute z-score statistics")
    return float(values.mean()), float(max(values.std(), 1e-3))
