"""3D training patches: foreground oversampling, nnU-Net-like augmentation, sharding across ranks.

Sample ``i`` of an epoch is drawn from its own generator (seed, epoch, i), so any rank or worker
can make it and a resumed run sees the same patches. A fixed share of samples (``oversample_
foreground``) is centred on a labelled voxel: tumor (two times in three when the case has tumor)
or kidney; the rest are centred anywhere in the volume.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    RandSimulateLowResolutiond,
    RandZoomd,
)
from torch.utils.data import Dataset, Sampler

from nephroseg.preprocess import normalize_hu
from nephroseg.preprocess.volumetric import VolumeCase
from nephroseg.recipe import Recipe

PAD_HU = -1024.0  # air: what a patch reaching past the volume sees
TUMOR_SHARE = 2 / 3  # of foreground-centred patches, when the case has tumor


def is_foreground_sample(index: int, share: float) -> bool:
    """Exactly ``share`` of consecutive indices (to rounding) are foreground-centred."""
    return math.floor((index + 1) * share + 1e-9) > math.floor(index * share + 1e-9)


def build_patch_augmentation(anisotropic: bool) -> Compose:
    """nnU-Net's augmentation as MONAI dictionary transforms on ``image`` (normalized) and ``label``.
    Anisotropic data are rotated in-plane only (axis 0 is z)."""
    angle = math.radians(30)
    rotate = (angle, 0.0, 0.0) if anisotropic else (angle, angle, angle)
    both = ["image", "label"]
    return Compose(
        [
            RandAffined(
                both, prob=0.2, rotate_range=rotate, mode=("bilinear", "nearest"), padding_mode="zeros"
            ),
            RandZoomd(
                both,
                prob=0.2,
                min_zoom=0.7,
                max_zoom=1.4,
                mode=("trilinear", "nearest"),
                padding_mode="constant",
            ),
            RandGaussianNoised("image", prob=0.1, std=0.1),
            RandGaussianSmoothd(
                "image", prob=0.2, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)
            ),
            RandScaleIntensityd("image", factors=0.25, prob=0.15),  # brightness ×0.75–1.25
            RandScaleIntensityFixedMeand("image", factors=0.25, preserve_range=True, prob=0.15),  # contrast
            RandSimulateLowResolutiond("image", prob=0.25, zoom_range=(0.5, 1.0)),
            RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5), retain_stats=True),  # gamma
            RandFlipd(both, prob=0.5, spatial_axis=0),
            RandFlipd(both, prob=0.5, spatial_axis=1),
            RandFlipd(both, prob=0.5, spatial_axis=2),
        ]
    )


def extract_patch(
    array: np.ndarray, start: tuple[int, int, int], size: tuple[int, int, int], fill: float
) -> np.ndarray:
    """``array[start : start + size]`` with whatever lies outside the array set to ``fill``."""
    out = np.full(size, fill, dtype=array.dtype)
    src, dst = [], []
    for lo, n, total in zip(start, size, array.shape, strict=True):
        a, b = max(lo, 0), min(lo + n, total)
        src.append(slice(a, max(a, b)))
        dst.append(slice(a - lo, a - lo + max(0, b - a)))
    out[tuple(dst)] = array[tuple(src)]
    return out


class PatchDataset(Dataset):
    """Index ``i`` → (image (1, z, y, x) float32, label (1, z, y, x) int64) of the current epoch."""

    def __init__(self, cases: list[VolumeCase], recipe: Recipe, seed: int, augment: bool = True) -> None:
        spec = recipe.volumetric
        if spec is None:
            raise ValueError("patch sampling needs a recipe with a volumetric section")
        if not cases:
            raise ValueError("no training cases")
        self.cases = cases
        self.patch = tuple(spec.patch_size)
        self.share = spec.oversample_foreground
        self.preprocess = recipe.preprocess
        spacing = spec.target_spacing or (1.0, 1.0, 1.0)
        self.transform = (
            build_patch_augmentation(max(spacing) / min(spacing) > spec.anisotropy_threshold)
            if augment
            else None
        )
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 2**31 - 1  # indices come from PatchSampler

    def centre(self, case: VolumeCase, foreground: bool, rng: np.random.Generator) -> np.ndarray:
        pools = [p for p in (case.tumor_points, case.kidney_points) if len(p)]
        if foreground and pools:
            pool = pools[0] if len(pools) == 1 or rng.random() < TUMOR_SHARE else pools[1]
            return np.asarray(pool[rng.integers(len(pool))])
        return np.array([rng.integers(n) for n in case.hu.shape])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        case = self.cases[int(rng.integers(len(self.cases)))]
        centre = self.centre(case, is_foreground_sample(int(index), self.share), rng)
        # The centre lands anywhere in the middle half of the patch, not always at its centre.
        jitter = [int(rng.integers(-(n // 4), n // 4 + 1)) for n in self.patch]
        start = tuple(int(c) - n // 2 + j for c, n, j in zip(centre, self.patch, jitter, strict=True))
        hu = extract_patch(np.asarray(case.hu), start, self.patch, PAD_HU)  # type: ignore[arg-type]
        label = extract_patch(np.asarray(case.label), start, self.patch, 0)  # type: ignore[arg-type]
        image = normalize_hu(hu.astype(np.float32), self.preprocess)[None]
        if self.transform is None:
            return torch.from_numpy(image), torch.from_numpy(label[None].astype(np.int64))
        self.transform.set_random_state(seed=int(rng.integers(2**31)))
        out = self.transform({"image": image, "label": label[None].astype(np.float32)})
        image_t = torch.as_tensor(np.asarray(out["image"]), dtype=torch.float32)
        label_t = torch.as_tensor(np.asarray(out["label"])).round().to(torch.int64)
        return image_t, label_t


class PatchSampler(Sampler[int]):
    """The sample indices of one epoch for one rank: ``iterations × batch`` of them, interleaved with
    the other ranks' (rank r takes every world_size-th index), as ``DistributedSampler`` does."""

    def __init__(self, iterations: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.per_rank = iterations * batch_size
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.per_rank * self.world_size, self.world_size))
