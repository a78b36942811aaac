"""Augmentations as one torchvision v2 pipeline applied to image and label together (seed 004's
rotation, flip, pad and random-resized crop; seed 003's flips)."""

from __future__ import annotations

import torch
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


def apply_augmentation(
    transform: v2.Compose | None, image: torch.Tensor, label: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """image (k, H, W) float, label (H, W) integer → the same, transformed identically."""
    if transform is None:
        return image, label
    out_image, out_label = transform(tv_tensors.Image(image), tv_tensors.Mask(label[None]))
    return out_image.as_subclass(torch.Tensor), out_label.as_subclass(torch.Tensor)[0]
