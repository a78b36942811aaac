"""Preprocessing: intensity normalization, in-plane resampling, 2.5D slice stacks, the prepared-case cache."""

from nephroseg.preprocess.geometry import (
    center_crop_or_pad,
    inplane_shape,
    pad_to_multiple,
    resize_slices,
    unpad,
)
from nephroseg.preprocess.intensity import (
    foreground_statistics,
    normalize_hu,
    padding_value,
)
from nephroseg.preprocess.kidney_boxes import kidney_boxes
from nephroseg.preprocess.prepare import (
    PreparedCase,
    prepare_case,
    prepare_kidney_crops,
    prepare_volumes,
    resample_hu,
)
from nephroseg.preprocess.stacks import neighbour_indices, slice_stacks

__all__ = [
    "PreparedCase",
    "center_crop_or_pad",
    "foreground_statistics",
    "inplane_shape",
    "kidney_boxes",
    "neighbour_indices",
    "normalize_hu",
    "pad_to_multiple",
    "padding_value",
    "prepare_case",
    "prepare_kidney_crops",
    "prepare_volumes",
    "resample_hu",
    "resize_slices",
    "slice_stacks",
    "unpad",
]
