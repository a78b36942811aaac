"""The dataset fingerprint (nnU-Net's first stage) and what is planned from it.

Per case: voxel spacing, shape after cropping to the body, and a uniform sample of foreground
(label > 0) intensities. Combined: the foreground 0.5/99.5 percentiles, mean and std used for CT
normalization (clip to the percentiles, then z-score), and the target spacing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

FOREGROUND_SAMPLES_PER_CASE = 10_000  # nnU-Net samples 10,000 foreground voxels per case


@dataclass(frozen=True)
class CaseFingerprint:
    case_id: str
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]  # after cropping to the body
    foreground: np.ndarray  # sampled foreground intensities (float32)


@dataclass(frozen=True)
class Fingerprint:
    spacings: list[tuple[float, float, float]]
    shapes: list[tuple[int, int, int]]
    percentile_00_5: float
    percentile_99_5: float
    mean: float
    std: float
    foreground_voxels: int

    def to_json(self) -> dict:
        return asdict(self)

    def target_spacing(self, threshold: float = 3.0) -> tuple[float, float, float]:
        return plan_target_spacing(np.asarray(self.spacings), np.asarray(self.shapes), threshold)


def sample_foreground(
    image: np.ndarray, label: np.ndarray, n: int = FOREGROUND_SAMPLES_PER_CASE, seed: int = 1234
) -> np.ndarray:
    """Up to ``n`` intensities drawn uniformly (without replacement) from the voxels where label > 0."""
    values = np.asarray(image)[np.asarray(label) > 0].astype(np.float32)
    if values.size <= n:
        return values
    return values[np.random.default_rng(seed).choice(values.size, n, replace=False)]


def combine_fingerprints(cases: list[CaseFingerprint]) -> Fingerprint:
    if not cases:
        raise ValueError("a fingerprint needs at least one case")
    values = np.concatenate([c.foreground.astype(np.float64) for c in cases])
    if values.size == 0:
        raise ValueError("no foreground voxels in the training cases: cannot normalize")
    low, high = np.percentile(values, [0.5, 99.5])
    return Fingerprint(
        spacings=[tuple(float(s) for s in c.spacing) for c in cases],  # type: ignore[misc]
        shapes=[tuple(int(n) for n in c.shape) for c in cases],  # type: ignore[misc]
        percentile_00_5=float(low),
        percentile_99_5=float(high),
        mean=float(values.mean()),
        std=float(max(values.std(), 1e-3)),
        foreground_voxels=int(values.size),
    )


def plan_target_spacing(
    spacings: np.ndarray, shapes: np.ndarray, threshold: float = 3.0
) -> tuple[float, float, float]:
    """The median spacing; for anisotropic data (the coarsest median axis more than ``threshold``
    times the finest other one, and correspondingly fewer voxels along it) that axis gets the 10th
    percentile of its spacings instead, never finer than the other axes (nnU-Net's rule)."""
    spacings = np.asarray(spacings, dtype=np.float64).reshape(-1, 3)
    shapes = np.asarray(shapes, dtype=np.float64).reshape(-1, 3)
    target = np.median(spacings, axis=0)
    median_shape = np.median(shapes, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(3) if a != worst]
    aniso_spacing = target[worst] > threshold * max(target[others])
    aniso_voxels = median_shape[worst] * threshold < min(median_shape[others])
    if aniso_spacing and aniso_voxels:
        coarse = float(np.percentile(spacings[:, worst], 10))
        if coarse < max(target[others]):
            coarse = max(max(target[others]), coarse) + 1e-5
        target[worst] = coarse
    return (float(target[0]), float(target[1]), float(target[2]))


def ct_normalize(image: np.ndarray, fingerprint: Fingerprint) -> np.ndarray:
    """nnU-Net's CT scheme: clip to the foreground 0.5/99.5 percentiles, z-score by foreground stats."""
    clipped = np.clip(
        np.asarray(image, dtype=np.float32), fingerprint.percentile_00_5, fingerprint.percentile_99_5
    )
    return ((clipped - fingerprint.mean) / fingerprint.std).astype(np.float32)
