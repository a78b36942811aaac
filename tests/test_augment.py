"""Seed 004's geometric augmentation as one affine resampling: each part checked against torchvision's
own transform at a fixed draw, and the whole against what it must keep (labels, air, determinism)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from nephroseg.data.augment import GeometricAugmentation, apply_augmentation
from nephroseg.recipe import AugmentSpec

AIR = -1.0


class FixedDraws:
    """Stands in for a numpy Generator: ``uniform`` and ``random`` return the given values in turn."""

    def __init__(self, uniform: list[float], random: list[float]) -> None:
        self._uniform, self._random = list(uniform), list(random)

    def uniform(self, low: float, high: float) -> float:
        value = self._uniform.pop(0)
        assert low <= value <= high or low == high
        return value if low != high else low

    def random(self) -> float:
        return self._random.pop(0)


def _sample(side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand((3, side, side), generator=generator) * 2 - 1
    label = torch.randint(0, 3, (side, side), generator=generator)
    return image, label


def test_a_flip_alone_is_exact() -> None:
    image, label = _sample()
    flip = GeometricAugmentation(AugmentSpec(hflip_p=1.0), 16, AIR)
    out_image, out_label = flip(image, label, FixedDraws([0.0] * 5, [0.0, 0.9]))
    assert torch.allclose(out_image, torch.flip(image, [-1]), atol=1e-6)
    assert torch.equal(out_label, torch.flip(label, [-1]))


@pytest.mark.parametrize("degrees", [90.0, -90.0, 10.0])
def test_rotation_turns_the_way_torchvision_does(degrees: float) -> None:
    image, label = _sample()
    rotate = GeometricAugmentation(AugmentSpec(rotate_deg=90), 16, AIR)
    out_image, out_label = rotate(image, label, FixedDraws([degrees, 0.0, 0.0, 0.0, 0.0], [1.0, 1.0]))
    expected = TF.rotate(image - AIR, degrees, interpolation=TF.InterpolationMode.BILINEAR) + AIR
    assert torch.allclose(out_image, expected, atol=1e-5)  # air (the fill) in the corners alike
    if abs(degrees) == 90:  # pixel centres land on pixel centres: the labels turn exactly
        assert torch.equal(out_label, TF.rotate(label[None], degrees)[0])


def test_pad_and_crop_resize_a_box_of_the_padded_image() -> None:
    image, label = _sample()
    spec = AugmentSpec(pad_px=2, crop_area=(0.25, 1.0), crop_ratio=(0.5, 2.0))
    crop = GeometricAugmentation(spec, 12, AIR)
    # padded side 20; area 0.36 · 400 = 144 at aspect 1: a 12 px box at top 3, left 5 of the padding
    out_image, out_label = crop(image, label, FixedDraws([0.0, 0.36, 0.0, 3.0, 5.0], [1.0, 1.0]))
    padded = TF.pad(image, [2], fill=AIR)
    assert torch.allclose(out_image, padded[:, 3:15, 5:17], atol=1e-6)  # 12 px resized to 12: a copy
    assert torch.equal(out_label, TF.pad(label[None], [2], fill=0)[0, 3:15, 5:17])
    # the whole padded image (area 1) squeezed to 12 px: torchvision's bilinear resize
    out_image, _ = crop(image, label, FixedDraws([0.0, 1.0, 0.0, 0.0, 0.0], [1.0, 1.0]))
    expected = TF.resize(padded, [12, 12], interpolation=TF.InterpolationMode.BILINEAR, antialias=False)
    assert torch.allclose(out_image, expected, atol=1e-5)


def test_random_draws_keep_labels_and_depend_on_the_seed_alone() -> None:
    image, label = _sample(32)
    spec = AugmentSpec(rotate_deg=15, hflip_p=0.5, pad_px=4, crop_area=(0.35, 1.0), crop_ratio=(0.96, 1.04))
    augment = GeometricAugmentation(spec, 24, AIR)
    first = apply_augmentation(augment, image, label, seed=5)
    torch.rand(7)  # the global generators do not matter
    np.random.rand(3)
    again = apply_augmentation(augment, image, label, seed=5)
    other = apply_augmentation(augment, image, label, seed=6)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    assert first[0].shape == (3, 24, 24) and first[1].shape == (24, 24) and first[1].dtype == label.dtype
    assert set(first[1].unique().tolist()) <= {0, 1, 2}
    assert float(first[0].min()) >= AIR - 1e-6 and float(first[0].max()) <= 1.0 + 1e-6
