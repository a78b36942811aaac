"""Properties over generated inputs (hypothesis): NIfTI round trips in any orientation and data type,
invertible padding and resizing, and the algebra of the overlap scores."""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nephroseg.io import read_volume, write_like
from nephroseg.io.volume import CANONICAL_AXCODES
from nephroseg.metrics.overlap import dice, iou
from nephroseg.preprocess import center_crop_or_pad, inplane_shape, pad_to_multiple, resize_slices, unpad

SETTINGS = settings(deadline=None, max_examples=25)

shapes = st.tuples(*[st.integers(1, 6)] * 3)
spacings = st.tuples(*[st.sampled_from([0.5, 0.7421875, 0.919921875, 1.0, 2.5, 5.0])] * 3)
DTYPES = ["int16", "uint8", "int32", "float32", "float64", "scaled"]


@st.composite
def affines(draw) -> np.ndarray:
    """Axis-aligned grids in any of the 48 orientations: a permutation of the axes, flips, an origin."""
    permutation = draw(st.permutations([0, 1, 2]))
    signs = draw(st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3))
    spacing = draw(spacings)
    affine = np.eye(4)
    affine[:3, :3] = 0
    for column, row in enumerate(permutation):
        affine[row, column] = signs[column] * spacing[column]
    affine[:3, 3] = draw(st.tuples(*[st.integers(-300, 300).map(float)] * 3))
    return affine


@st.composite
def volumes(draw) -> tuple[np.ndarray, str]:
    """Stored values of each data type, kept where float32 (what ``read_volume`` returns) is exact."""
    kind = draw(st.sampled_from(DTYPES))
    shape = draw(shapes)
    if kind == "uint8":
        elements = st.integers(0, 255)
    elif kind in ("int16", "scaled"):
        elements = st.integers(-1024, 3071)
    elif kind == "int32":
        elements = st.integers(-(2**24), 2**24)
    else:
        elements = st.floats(-2000, 4000, width=32)
    stored = "int16" if kind == "scaled" else kind
    return draw(arrays(np.dtype(stored), shape, elements=elements)), kind


def _save(path: Path, data: np.ndarray, affine: np.ndarray, kind: str) -> None:
    image = nib.Nifti1Image(data, affine)
    image.set_data_dtype(data.dtype)
    if kind == "scaled":  # CT as scanners store it: raw integers, slope and intercept in the header
        image.header.set_slope_inter(0.5, -1024.0)
    nib.save(image, path)


@SETTINGS
@given(volume=volumes(), affine=affines())
def test_any_orientation_and_dtype_round_trips_exactly(volume, affine) -> None:
    data, kind = volume
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in.nii.gz"
        _save(source, data, affine, kind)
        read = read_volume(source)
        assert tuple(nib.aff2axcodes(read.affine)) == CANONICAL_AXCODES
        assert read.array.dtype == np.float32
        # C order with no negative stride, even on a length-1 axis: torch takes the array as it is
        assert read.array.flags.c_contiguous and min(read.array.strides) >= 0
        back_dtype = np.float32 if kind == "scaled" else data.dtype
        out = write_like(read.array, read, Path(folder) / "out.nii.gz", dtype=back_dtype)
        original, written = nib.load(source), nib.load(out)
        assert written.shape == original.shape
        np.testing.assert_array_equal(written.affine, original.affine)
        np.testing.assert_array_equal(written.get_fdata(), original.get_fdata())
        if kind != "scaled":
            np.testing.assert_array_equal(np.asarray(written.dataobj), data)
            assert written.get_data_dtype() == data.dtype


@SETTINGS
@given(shape=shapes, affine=affines(), seed=st.integers(0, 2**16))
def test_label_round_trip_is_exact(shape, affine, seed) -> None:
    labels = np.random.default_rng(seed).integers(0, 3, size=shape).astype(np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "seg.nii.gz"
        _save(source, labels, affine, "uint8")
        read = read_volume(source, label=True)
        assert read.array.dtype == np.uint8
        assert (
            np.bincount(read.array.ravel(), minlength=3).tolist()
            == np.bincount(labels.ravel(), minlength=3).tolist()
        )
        written = nib.load(write_like(read.array, read, Path(folder) / "out.nii.gz"))
        np.testing.assert_array_equal(np.asarray(written.dataobj), labels)
        np.testing.assert_array_equal(written.affine, nib.load(source).affine)


# ---- padding and resizing --------------------------------------------------------------------------


@SETTINGS
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    multiple=st.integers(1, 32),
    value=st.floats(-5, 5, width=32),
    seed=st.integers(0, 2**16),
)
def test_pad_to_multiple_then_unpad_is_identity(h, w, multiple, value, seed) -> None:
    tensor = torch.from_numpy(np.random.default_rng(seed).normal(size=(2, 3, h, w)).astype(np.float32))
    padded, pad = pad_to_multiple(tensor, multiple, value)
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    assert all(0 <= p < multiple for p in pad)
    assert padded.shape[-2] - h < multiple and padded.shape[-1] - w < multiple
    assert torch.equal(unpad(padded, pad), tensor)
    border = padded.clone()
    left, top = pad[0], pad[2]
    border[..., top : top + h, left : left + w] = value
    assert torch.all(border == value)


@SETTINGS
@given(
    z=st.integers(1, 3),
    h=st.integers(1, 16),
    w=st.integers(1, 16),
    fy=st.integers(1, 4),
    fx=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_label_resize_up_by_an_integer_factor_and_back_is_identity(z, h, w, fy, fx, seed) -> None:
    labels = np.random.default_rng(seed).integers(0, 3, size=(z, h, w)).astype(np.uint8)
    up = resize_slices(labels, (h * fy, w * fx), label=True)
    assert up.dtype == torch.uint8 and tuple(up.shape) == (z, h * fy, w * fx)
    assert set(torch.unique(up).tolist()) <= set(np.unique(labels).tolist())
    back = resize_slices(up, (h, w), label=True)
    np.testing.assert_array_equal(back.numpy(), labels)


@SETTINGS
@given(
    h=st.integers(2, 24),
    w=st.integers(2, 24),
    out_h=st.integers(1, 48),
    out_w=st.integers(1, 48),
    level=st.floats(-1000, 1000, width=32),
)
def test_image_resize_keeps_a_constant_and_same_size_is_a_no_op(h, w, out_h, out_w, level) -> None:
    constant = np.full((2, h, w), level, np.float32)
    resized = resize_slices(constant, (out_h, out_w))
    assert tuple(resized.shape) == (2, out_h, out_w)
    np.testing.assert_allclose(resized.numpy(), level, rtol=1e-5, atol=1e-3)
    noise = np.random.default_rng(0).normal(size=(2, h, w)).astype(np.float32)
    assert torch.equal(resize_slices(noise, (h, w)), torch.from_numpy(noise))


@SETTINGS
@given(
    h=st.integers(1, 600),
    w=st.integers(1, 600),
    spacing=st.tuples(st.floats(0.3, 5.0), st.floats(0.3, 5.0)),
)
def test_inplane_shape_keeps_the_field_of_view(h, w, spacing) -> None:
    assert inplane_shape((h, w), spacing, None) == (h, w)
    target = 1.0
    out = inplane_shape((h, w), spacing, target)
    for n, s, m in zip((h, w), spacing, out, strict=True):
        # the resampled extent is the source extent to within half a target pixel (at least one pixel)
        assert abs(m * target - n * s) <= target / 2 + 1e-9 or (m == 1 and n * s < target)


@SETTINGS
@given(
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    grow=st.tuples(st.integers(0, 9), st.integers(0, 9)),
    seed=st.integers(0, 2**16),
)
def test_center_pad_then_crop_back_is_identity(h, w, grow, seed) -> None:
    array = np.random.default_rng(seed).normal(size=(2, h, w))
    bigger = center_crop_or_pad(array, (h + grow[0], w + grow[1]), value=-7.0)
    assert bigger.shape == (2, h + grow[0], w + grow[1])
    np.testing.assert_array_equal(center_crop_or_pad(bigger, (h, w), value=0.0), array)


# ---- overlap scores --------------------------------------------------------------------------------

masks = st.integers(1, 60).flatmap(lambda n: st.tuples(arrays(bool, n), arrays(bool, n)))


@settings(deadline=None, max_examples=100)
@given(pair=masks)
def test_dice_and_iou_algebra(pair) -> None:
    a, b = pair
    d, j = dice(a, b), iou(a, b)
    assert 0.0 <= d <= 1.0 and 0.0 <= j <= 1.0
    assert d == dice(b, a) and j == iou(b, a)
    assert np.isclose(d, 2 * j / (1 + j))
    assert j <= d  # IoU never exceeds Dice
    assert dice(a, a) == iou(a, a) == 1.0
    if a.any() and not (a & b).any():
        assert d == j == 0.0
