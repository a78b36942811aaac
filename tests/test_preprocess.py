"""Intensity normalization, in-plane resampling and 2.5D stacks against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nephroseg.io import find_cases, volume_from_array
from nephroseg.preprocess import (
    center_crop_or_pad,
    foreground_statistics,
    inplane_shape,
    normalize_hu,
    pad_to_multiple,
    padding_value,
    prepare_case,
    resample_hu,
    resize_slices,
    slice_stacks,
    unpad,
)
from nephroseg.recipe import PreprocessSpec


def test_window_clips_to_minus_300_300_and_scales_to_unit_range() -> None:
    spec = PreprocessSpec()
    hu = np.array([-1000, -300, 0, 150, 300, 2000], np.float32)
    np.testing.assert_allclose(normalize_hu(hu, spec), [-1, -1, 0, 0.5, 1, 1], atol=1e-6)
    assert padding_value(spec) == -1.0


def test_zscore_uses_clipped_foreground_statistics() -> None:
    spec = PreprocessSpec(normalization="zscore")
    mean, std = foreground_statistics([np.array([100.0, 200.0]), np.array([1000.0])], spec)
    # 1000 is clipped to 300: values 100, 200, 300
    assert mean == pytest.approx(200.0)
    assert std == pytest.approx(np.std([100, 200, 300]))
    spec = PreprocessSpec(normalization="zscore", zscore_mean=mean, zscore_std=std)
    np.testing.assert_allclose(normalize_hu(np.array([200.0, 5000.0]), spec), [0.0, 100 / std], rtol=1e-5)
    with pytest.raises(ValueError, match="z-score normalization needs"):
        normalize_hu(np.zeros(2), PreprocessSpec(normalization="zscore"))


def test_normalization_is_the_arithmetic_of_monai_transforms() -> None:
    """normalize_hu avoids importing MONAI at prediction time; it must equal MONAI's transforms."""
    from monai.transforms import NormalizeIntensity, ScaleIntensityRange

    hu = np.random.default_rng(0).uniform(-1200, 2500, size=(4, 9, 7)).astype(np.float32)
    for lo, hi in ((-300, 300), (-79, 304)):
        spec = PreprocessSpec(hu_min=lo, hu_max=hi)
        expected = ScaleIntensityRange(lo, hi, -1.0, 1.0, clip=True)(hu)
        np.testing.assert_array_equal(normalize_hu(hu, spec), np.asarray(expected))  # bit for bit
        spec = PreprocessSpec(
            hu_min=lo, hu_max=hi, normalization="zscore", zscore_mean=101.5, zscore_std=57.25
        )
        clipped = ScaleIntensityRange(lo, hi, lo, hi, clip=True)(hu)
        expected = NormalizeIntensity(subtrahend=101.5, divisor=57.25)(clipped)
        np.testing.assert_array_equal(normalize_hu(hu, spec), np.asarray(expected))
    assert normalize_hu(hu, spec).dtype == np.float32
    assert hu.min() < -1000  # the input is left as it was


def test_inplane_shape_follows_physical_size() -> None:
    assert inplane_shape((512, 400), (0.8, 0.8), 1.6) == (256, 200)
    assert inplane_shape((100, 100), (1.0, 2.0), None) == (100, 100)


def test_resize_slices_keeps_constant_images_and_label_values() -> None:
    image = np.full((2, 8, 8), 42.0, np.float32)
    assert torch.allclose(resize_slices(image, (4, 4)), torch.tensor(42.0))
    label = np.zeros((1, 8, 8), np.uint8)
    label[0, :4] = 2
    small = resize_slices(label, (4, 4), label=True)
    assert small.dtype == torch.uint8 and set(small.unique().tolist()) == {0, 2}
    assert int((small == 2).sum()) == 8  # the top half of a 4×4 grid


def test_pad_to_multiple_and_unpad_round_trip() -> None:
    tensor = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(2, 5, 7)
    padded, pad = pad_to_multiple(tensor, 4, value=-1.0)
    assert padded.shape == (2, 8, 8)
    assert torch.equal(unpad(padded, pad), tensor)
    assert padded[0, 0, 0] == -1.0


def test_center_crop_or_pad() -> None:
    array = np.arange(20, dtype=np.float32).reshape(4, 5)
    out = center_crop_or_pad(array, (2, 7), value=-9)
    assert out.shape == (2, 7)
    np.testing.assert_array_equal(out[:, 1:6], array[1:3])
    assert out[0, 0] == -9


def test_slice_stacks_replicate_edges() -> None:
    volume = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 2, 2), np.float32)
    stacks = slice_stacks(volume, [0, 2, 3], k=3)
    assert stacks.shape == (3, 3, 2, 2)
    assert stacks[:, :, 0, 0].tolist() == [[0, 0, 1], [1, 2, 3], [2, 3, 3]]


def test_resample_hu_reports_new_spacing() -> None:
    affine = np.diag([-0.8, -0.8, 2.0, 1.0])  # L-P-S... any orientation; canonical spacing (2, .8, .8)
    volume = volume_from_array(np.zeros((10, 10, 3), np.float32), affine)
    hu, spacing = resample_hu(volume, 1.6)
    assert hu.shape == (3, 5, 5)
    assert spacing == pytest.approx((2.0, 1.6, 1.6))


def test_prepare_case_caches_and_reuses(kits_dir: Path, tmp_path: Path) -> None:
    case = find_cases(kits_dir)[0]
    first = prepare_case(case, 3.0, tmp_path / "cache")
    assert first.hu.dtype == np.int16 and first.hu.shape == (12, 20, 24)
    assert len(first.tumor_slices) > 0 and set(first.tumor_slices) <= set(first.kidney_slices)
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1
    again = prepare_case(case, 3.0, tmp_path / "cache")
    assert isinstance(again.hu, np.memmap)
    np.testing.assert_array_equal(again.hu, first.hu)
    prepare_case(case, 2.0, tmp_path / "cache")  # other settings: a second entry
    assert len(list((tmp_path / "cache").iterdir())) == 2
