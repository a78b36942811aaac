"""Splits by case and tumor-aware 2.5D sampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from nephroseg.data import SliceDataset, SliceSampler, holdout_split, kfold_splits, ratio_split
from nephroseg.data.slices import TUMOR, SampleKey
from nephroseg.preprocess import PreparedCase, normalize_hu
from nephroseg.recipe import AugmentSpec, PreprocessSpec, Recipe, TrainSpec

IDS = [f"case_{i:05d}" for i in range(10)]


def test_splits_are_reproducible_and_disjoint() -> None:
    assert holdout_split(IDS, seed=3, n_val=3) == holdout_split(IDS, seed=3, n_val=3)
    assert holdout_split(IDS, seed=3, n_val=3) != holdout_split(IDS, seed=4, n_val=3)
    split = ratio_split(IDS, seed=0)
    assert (len(split.train), len(split.val), len(split.test)) == (7, 2, 1)
    assert sorted(split.train + split.val + split.test) == IDS


def test_kfold_validates_each_case_exactly_once() -> None:
    folds = kfold_splits(IDS, seed=1, folds=5)
    validated = [c for f in folds for c in f.val]
    assert sorted(validated) == IDS
    for fold in folds:
        assert not set(fold.train) & set(fold.val)
        assert sorted(fold.train + fold.val) == IDS


def test_split_errors() -> None:
    with pytest.raises(ValueError):
        holdout_split(IDS[:2], seed=0, n_val=2)
    with pytest.raises(ValueError):
        kfold_splits(IDS[:3], seed=0, folds=5)


def _case(seed: int, tumor: bool = True) -> PreparedCase:
    rng = np.random.default_rng(seed)
    hu = rng.integers(-200, 200, size=(10, 40, 40)).astype(np.int16)
    label = np.zeros((10, 40, 40), np.uint8)
    label[3:7, 10:20, 10:20] = 1
    if tumor:
        label[4, 12:15, 12:15] = 2
    return PreparedCase(f"c{seed}", hu, label, (3.0, 1.0, 1.0))


def test_sampler_draws_the_asked_share_of_tumor_slices_and_is_reproducible() -> None:
    cases = [_case(0), _case(1, tumor=False)]
    spec = TrainSpec(
        iterations_per_epoch=500, batch_size=4, tumor_slice_fraction=0.5, kidney_slice_fraction=0.3
    )
    sampler = SliceSampler(cases, spec, seed=7)
    keys = list(sampler)
    assert len(keys) == 2000
    tumor_keys = [k for k in keys if k.focus == TUMOR]
    assert all(k.case == 0 and k.slice == 4 for k in tumor_keys)
    assert abs(len(tumor_keys) / len(keys) - 0.5) < 0.05
    assert keys == list(SliceSampler(cases, spec, seed=7))
    sampler.set_epoch(1)
    assert keys != list(sampler)


def test_component_sampling_draws_a_small_tumor_as_often_as_a_large_one() -> None:
    """A main tumor on slices 1–8 and a satellite on slice 9 alone: by slice, the satellite's slice
    is 1 of 9 tumor slices; by component, it is one of two tumors."""
    case = _case(0, tumor=False)
    case.label[1:9, 20:30, 20:30] = 2
    case.label[9, 5:7, 5:7] = 2
    assert [list(z) for z in case.tumor_components] == [list(range(1, 9)), [9]]
    shares = {}
    for mode in ("slice", "component"):
        spec = TrainSpec(
            iterations_per_epoch=1000,
            batch_size=4,
            tumor_slice_fraction=1.0,
            kidney_slice_fraction=0.0,
            tumor_sampling=mode,
        )
        slices = [k.slice for k in SliceSampler([case], spec, seed=3)]
        assert set(slices) == set(range(1, 10))
        shares[mode] = slices.count(9) / len(slices)
    assert abs(shares["slice"] - 1 / 9) < 0.02
    assert abs(shares["component"] - 1 / 2) < 0.03


@pytest.mark.parametrize("shuffle_buffer", [None, 5])
def test_ranks_share_one_stream_without_overlap(shuffle_buffer: int | None) -> None:
    """Two torchrun ranks take alternate keys of the stream one process would draw for both: no
    sample twice, none dropped, each rank a full epoch of its own (epoch 1 continuing epoch 0)."""
    cases = [_case(0), _case(1)]
    shares = {"tumor_slice_fraction": 0.0, "kidney_slice_fraction": 0.0} if shuffle_buffer else {}
    per_rank = TrainSpec(iterations_per_epoch=3, batch_size=4, shuffle_buffer=shuffle_buffer, **shares)
    both = per_rank.model_copy(update={"iterations_per_epoch": 6})
    for epoch in (0, 1):
        ranks = [SliceSampler(cases, per_rank, seed=5, rank=r, world_size=2) for r in (0, 1)]
        single = SliceSampler(cases, both, seed=5)
        for sampler in (*ranks, single):
            sampler.set_epoch(epoch)
        rank0, rank1 = (list(s) for s in ranks)
        assert len(rank0) == len(rank1) == len(ranks[0]) == 12
        assert [k for pair in zip(rank0, rank1, strict=True) for k in pair] == list(single)


def test_shuffle_buffer_streams_slices_in_file_order_shuffled_locally_and_resumably() -> None:
    cases = [_case(0), _case(1)]  # 2 × 10 slices: stream index = 10 · case + slice
    no_fraction = {"tumor_slice_fraction": 0.0, "kidney_slice_fraction": 0.0}
    in_order = TrainSpec(iterations_per_epoch=3, batch_size=5, shuffle_buffer=1, **no_fraction)
    assert [10 * k.case + k.slice for k in SliceSampler(cases, in_order, seed=0)] == list(range(15))
    spec = TrainSpec(iterations_per_epoch=3, batch_size=5, shuffle_buffer=5, **no_fraction)
    sampler = SliceSampler(cases, spec, seed=0)
    first = [10 * k.case + k.slice for k in sampler]
    assert first != sorted(first) and len(set(first)) == 15  # shuffled, each slice at most once
    assert all(index <= position + 4 for position, index in enumerate(first))  # only within the buffer
    sampler.set_epoch(1)
    second = list(sampler)
    whole_run = list(itertools.islice(SliceSampler(cases, spec, seed=0)._buffered_stream(), 30))
    assert list(SliceSampler(cases, spec, seed=0)) + second == whole_run  # epoch 1 continues epoch 0
    with pytest.raises(ValueError, match="shuffle_buffer"):
        TrainSpec(shuffle_buffer=200, tumor_slice_fraction=0.4)


def test_dataset_crops_around_the_tumor_and_applies_seed_004_augmentation() -> None:
    cases = [_case(0)]
    preprocess = PreprocessSpec(size=16)
    augment = AugmentSpec(
        rotate_deg=9, hflip_p=0.5, pad_px=2, crop_area=(0.92, 0.99), crop_ratio=(0.96, 1.04)
    )
    dataset = SliceDataset(cases, preprocess, augment, in_slices=3)
    spec = TrainSpec(
        iterations_per_epoch=4, batch_size=4, tumor_slice_fraction=1.0, kidney_slice_fraction=0.0
    )
    loader = DataLoader(dataset, batch_size=4, sampler=SliceSampler(cases, spec, seed=0))
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
    assert labels.shape == (4, 16, 16) and labels.dtype == torch.int64
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
    assert set(labels.unique().tolist()) <= {0, 1, 2}
    assert all((label == 2).any() for label in labels)  # each crop keeps the tumor in view
    torch.rand(13)  # the global generator moved on: each sample still depends on its key alone
    again, _ = next(iter(DataLoader(dataset, batch_size=4, sampler=SliceSampler(cases, spec, seed=0))))
    assert torch.equal(images, again)


def test_crops_larger_than_the_slice_are_padded_with_air() -> None:
    dataset = SliceDataset([_case(0)], PreprocessSpec(size=64), AugmentSpec(), in_slices=1)
    from nephroseg.data import SampleKey

    image, label = dataset[SampleKey(0, 4, TUMOR, 1)]
    assert image.shape == (1, 64, 64)
    assert float(image.min()) == -1.0 and int((label == 2).sum()) == 9


def test_intensity_augmentation_changes_the_image_only_at_nnunet_rates() -> None:
    from nephroseg.data.slices import SampleKey

    cases = [_case(0)]
    plain = SliceDataset(cases, PreprocessSpec(size=16), AugmentSpec(), in_slices=3)
    varied = SliceDataset(cases, PreprocessSpec(size=16), AugmentSpec(intensity=True), in_slices=3)
    changed = 0
    for seed in range(300):
        key = SampleKey(case=0, slice=4, focus=TUMOR, seed=seed)
        (image, label), (image_aug, label_aug) = plain[key], varied[key]
        assert torch.equal(label, label_aug) and image_aug.dtype == torch.float32
        changed += not torch.equal(image, image_aug)
        if seed == 0:
            assert torch.equal(varied[key][0], image_aug)  # the same key, the same draw
    # Noise 0.1, blur 0.2, brightness 0.15, contrast 0.15, gamma 0.3: P(any) = 1 - 0.9·0.8·0.85²·0.7
    assert abs(changed / 300 - (1 - 0.9 * 0.8 * 0.85**2 * 0.7)) < 0.08


def test_a_training_patch_is_a_window_of_the_slice_at_the_same_spacing() -> None:
    """``size`` below the prediction tile: the sample is cut from the slice, never resized."""
    case, preprocess = _case(0), PreprocessSpec(size=32)
    dataset = SliceDataset([case], preprocess, AugmentSpec(), in_slices=1, size=12)
    windows = np.lib.stride_tricks.sliding_window_view(case.label[4], (12, 12))
    hu = case.hu[4:5].astype(np.float32)
    for seed in range(20):
        image, label = dataset[SampleKey(0, 4, TUMOR, seed)]
        assert image.shape == (1, 12, 12) and label.shape == (12, 12)
        assert int((label == 2).sum()) == 9  # the whole 3 × 3 tumor is in view
        matches = np.argwhere((windows == label.numpy()).all(axis=(2, 3)))
        assert any(  # some window whose labels match has exactly the sample's intensities
            np.allclose(image.numpy(), normalize_hu(hu[:, top : top + 12, left : left + 12], preprocess))
            for top, left in matches
        )
    with pytest.raises(ValueError, match=r"crop_size 48 exceeds preprocess\.size 32"):
        Recipe(name="x", preprocess=PreprocessSpec(size=32), train=TrainSpec(crop_size=48))
