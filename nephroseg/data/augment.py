"""Augmentations as one torchvision v2 pipeline applied to image and label together (seed 004's
rotation, flip, pad and random-resized crop; seed 003's flips), then, on request, nnU-Net's
intensity augmentation on the image alone (MONAI array transforms, as the 3D patches use)."""

from __future__ import annotations

import torch
from monai.transforms import (
    Compose,
    RandAdjustContrast,
    RandGaussianNoise,
    RandGaussianSmooth,
    RandScaleIntensity,
    RandScaleIntensityFixedMean,
)
from torchvision import tv_tensors
from torchvision.transforms import v2

from nephroseg.recipe import AugmentSpec


def build_augmentation(spec: AugmentSpec, size: int, fill: float) -> v2.Compose | None:
    """None when the recipe asks for no augmentation. ``fill`` is the normalized value of air."""
    fills = {tv_tensors.Image: fill, tv_tensors.Mask: 0}
    steps: list[v2.Transform] = []
    if spec.rotate_deg:
        steps.append(
            v2.RandomRotation(spec.rotate_deg, interpolation=v2.InterpolationMode.BILINEAR, fill=fills)
        )
    if spec.hflip_p:
        steps.append(v2.RandomHorizontalFlip(spec.hflip_p))
    if spec.vflip_p:
        steps.append(v2.RandomVerticalFlip(spec.vflip_p))
    if spec.pad_px:
        steps.append(v2.Pad(spec.pad_px, fill=fills))
    if spec.crop_area is not None or spec.pad_px:
        steps.append(
            v2.RandomResizedCrop(
                (size, size),
                scale=tuple(spec.crop_area or (1.0, 1.0)),
                ratio=tuple(spec.crop_ratio or (1.0, 1.0)),
                antialias=True,
            )
        )
    return v2.Compose(steps) if steps else None


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
    transform: v2.Compose | None, image: torch.Tensor, label: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """image (k, H, W) float, label (H, W) integer → the same, transformed identically."""
    if transform is None:
        return image, label
    out_image, out_label = transform(tv_tensors.Image(image), tv_tensors.Mask(label[None]))
    return out_image.as_subclass(torch.Tensor), out_label.as_subclass(torch.Tensor)[0]
