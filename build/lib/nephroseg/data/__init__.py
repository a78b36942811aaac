"""Training data: case splits, tumor-aware 2.5D slice sampling, shared augmentations."""

from nephroseg.data.augment import apply_augmentation, build_augmentation
from nephroseg.data.slices import SampleKey, SliceDataset, SliceSampler
from nephroseg.data.splits import Split, holdout_split, kfold_splits, make_split, ratio_split

__all__ = [
    "SampleKey",
    "SliceDataset",
    "SliceSampler",
    "Split",
    "apply_augmentation",
    "build_augmentation",
    "holdout_split",
    "kfold_splits",
    "make_split",
    "ratio_split",
]
