"""Augmentations applied to image and label together: seed 004's rotation, flip, pad and random
resized crop (seed 003's flips), composed into one affine map and resampled once; then, on request,
nnU-Net's intensity augmentation on the image alone (MONAI array transforms, as the 3D patches use).

One resampling instead of torchvision's chain of four transforms: 1.1 ms a sample against 4.1 ms for
torchvision v2's chain and 7.4 ms for MONAI's ``Affine`` (3 × 128², ``bench/augment_speed.py``), about
6 % of a demo refine step saved, and the image is interpolated once instead of twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import (
    Compose,
    RandAdjustContrast,
    RandGaussianNoise,
    RandGaussianSmooth,
    RandScaleIntensity,
    RandScaleIntensityFixedMean,
)

from nephroseg.recipe import AugmentSpec


@dataclass(frozen=True)
class GeometricAugmentation:
    """Rotate about the centre (±``rotate_deg``, air in the corners), flip, pad by ``pad_px`` of air,
    then crop a random box of ``crop_area`` of the padded area and aspect ``crop_ratio`` and resize it
    to ``size``, in that order, as torchvision's ``RandomRotation``, ``RandomHorizontalFlip``,
    ``Pad`` and ``RandomResizedCrop`` would; sampled bilinearly (image) and nearest (label)."""

    spec: AugmentSpec
    size: int
    fill: float

    def draw(self, rng: np.random.Generator, side: int) -> torch.Tensor:
        """The (2, 3) ``affine_grid`` matrix from output to input coordinates (normalized, [-1, 1],
        x first) of one sample drawn from ``rng``, for a square input of ``side`` pixels."""
        angle = math.radians(rng.uniform(-self.spec.rotate_deg, self.spec.rotate_deg))
        cos, sin = math.cos(angle), math.sin(angle)
        unrotate = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
        unflip = np.diag(
            [
                -1.0 if rng.random() < self.spec.hflip_p else 1.0,
                -1.0 if rng.random() < self.spec.vflip_p else 1.0,
                1.0,
            ]
        )
        top, left, height, width = self._crop_box(rng, side + 2 * self.spec.pad_px)
        centre_y = top + height / 2 - self.spec.pad_px  # in the unpadded input, pixel edges at 0 and side
        centre_x = left + width / 2 - self.spec.pad_px
        crop = np.array(
            [
                [width / side, 0.0, 2 * centre_x / side - 1],
                [0.0, height / side, 2 * centre_y / side - 1],
                [0, 0, 1],
            ]
        )
        return torch.from_numpy((unrotate @ unflip @ crop)[:2]).float()

    def _crop_box(self, rng: np.random.Generator, side: int) -> tuple[float, float, float, float]:
        """torchvision's ``RandomResizedCrop`` box: ten tries at a random area and aspect, then the
        whole image (the aspect ranges used here always fit within it)."""
        area_range = self.spec.crop_area or (1.0, 1.0)
        log_ratio = np.log(self.spec.crop_ratio or (1.0, 1.0))
        for _ in range(10):
            area = side * side * rng.uniform(*area_range)
            ratio = math.exp(rng.uniform(*log_ratio))
            width, height = math.sqrt(area * ratio), math.sqrt(area / ratio)
            if width <= side and height <= side:
                return rng.uniform(0, side - height), rng.uniform(0, side - width), height, width
        return 0.0, 0.0, float(side), float(side)

    def __call__(
        self, image: torch.Tensor, label: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image (k, S, S) float, label (S, S) integer → (k, size, size), (size, size)."""
        theta = self.draw(rng, image.shape[-1])[None]
        grid = F.affine_grid(theta, [1, 1, self.size, self.size], align_corners=False)
        warped = F.grid_sample((image - self.fill)[None], grid, mode="bilinear", align_corners=False)
        labels = F.grid_sample(label[None, None].float(), grid, mode="nearest", align_corners=False)
        return warped[0] + self.fill, labels[0, 0].to(label.dtype)


def build_augmentation(spec: AugmentSpec, size: int, fill: float) -> GeometricAugmentation | None:
    """None when the recipe asks for no geometric augmentation. ``fill`` is the normalized value of air."""
    wanted = spec.rotate_deg or spec.hflip_p or spec.vflip_p or spec.pad_px or spec.crop_area is not None
    return GeometricAugmentation(spec, size, fill) if wanted else None


def build_intensity_augmentation(spec: AugmentSpec) -> Compose | None:
    """Gaussian noise and blur, brightness, contrast and gamma with nnU-Net's probabilities, on a
    normalized (k, H, W) stack whose slices are channels; None when the recipe asks for none."""
    if not spec.intensity:
        return None
    return Compose(
        [
            RandGaussianNoise(prob=0.1, std=0.1),
            RandGaussianSmooth(sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), prob=0.2),
            RandScaleIntensity(factors=0.25, prob=0.15),  # brightness ×0.75–1.25
            RandScaleIntensityFixedMean(factors=0.25, preserve_range=True, prob=0.15),  # contrast
            RandAdjustContrast(prob=0.3, gamma=(0.7, 1.5), retain_stats=True),  # gamma
        ]
    )


def apply_intensity(transform: Compose | None, image: torch.Tensor, seed: int) -> torch.Tensor:
    """The intensity transforms drawn from ``seed``: a sample looks the same in every run."""
    if transform is None:
        return image
    transform.set_random_state(seed=seed % 2**32)
    out = transform(image)
    return (out.as_tensor() if hasattr(out, "as_tensor") else torch.as_tensor(out)).float()


def apply_augmentation(
    transform: GeometricAugmentation | None, image: torch.Tensor, label: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """image (k, H, W) float, label (H, W) integer → the same, transformed identically; the draw
    depends on ``seed`` alone, so a sample looks the same in every run."""
    if transform is None:
        return image, label
    return transform(image, label, np.random.default_rng([seed, 4]))
