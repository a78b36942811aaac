"""NIfTI reading and writing: geometry round-trips to the voxel, bad input refused with the file named."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import files_under, kits_affine, save_nifti

from nephroseg.errors import NephrosegInputError
from nephroseg.io import read_volume, volume_from_array, write_like
from nephroseg.io.atomic import atomic_path, atomic_write_text

RAS = np.diag([0.8, 0.7, 2.5, 1.0])
LPS = np.diag([-0.8, -0.7, 2.5, 1.0])


def _marker_volume(shape=(7, 9, 11)) -> np.ndarray:
    """Every voxel distinct, so any flip or transposition shows."""
    return np.arange(np.prod(shape), dtype=np.int16).reshape(shape)


@pytest.mark.parametrize(
    "affine,codes",
    [(kits_affine((2.0, 0.8, 0.8)), ("I", "P", "L")), (RAS, ("R", "A", "S")), (LPS, ("L", "P", "S"))],
)
def test_read_canonicalizes_and_write_restores_source_geometry(tmp_path: Path, affine, codes) -> None:
    data = _marker_volume()
    source = save_nifti(tmp_path / "in.nii.gz", data, affine, np.int16)
    volume = read_volume(source)
    assert volume.source.axcodes == codes
    assert nib.aff2axcodes(volume.affine) == ("I", "P", "L")
    # The canonical array holds the same voxels at the same world positions.
    world_first = volume.affine @ np.array([0, 0, 0, 1])
    index_in_source = np.linalg.solve(affine, world_first).round().astype(int)[:3]
    assert volume.array[0, 0, 0] == data[tuple(index_in_source)]

    out = write_like(volume.array.astype(np.int16), volume, tmp_path / "out.nii.gz", dtype=np.int16)
    written = nib.load(out)
    assert written.shape == data.shape
    np.testing.assert_array_equal(np.asarray(written.dataobj), data)
    np.testing.assert_allclose(written.affine, affine)
    assert nib.aff2axcodes(written.affine) == codes
    original = nib.load(source).header
    assert int(written.header["sform_code"]) == int(original["sform_code"])
    assert int(written.header["qform_code"]) == int(original["qform_code"])


def test_label_written_as_uint8_with_source_qform_and_sform(tmp_path: Path) -> None:
    data = np.zeros((4, 5, 6), np.int16)
    image = nib.Nifti1Image(data, RAS)
    image.set_qform(RAS, code=1)
    image.set_sform(RAS, code=4)
    nib.save(image, tmp_path / "in.nii")
    volume = read_volume(tmp_path / "in.nii")
    labels = np.zeros(volume.array.shape, np.uint8)
    labels[1, 2, 3] = 2
    written = nib.load(write_like(labels, volume, tmp_path / "seg.nii.gz"))
    assert written.get_data_dtype() == np.uint8
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (1, 4)
    np.testing.assert_array_equal(volume.to_source_orientation(labels), np.asarray(written.dataobj))


def test_scaled_data_applies_slope_and_intercept(tmp_path: Path) -> None:
    raw = np.array([[[0, 1024, 2048]]], dtype=np.uint16)
    image = nib.Nifti1Image(raw, RAS)
    image.header.set_slope_inter(1.0, -1024.0)
    nib.save(image, tmp_path / "scaled.nii.gz")
    volume = read_volume(tmp_path / "scaled.nii.gz")
    assert sorted(volume.array.ravel().tolist()) == [-1024.0, 0.0, 1024.0]


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
def test_any_numeric_dtype_reads_as_float32(tmp_path: Path, dtype) -> None:
    data = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    save_nifti(tmp_path / "v.nii.gz", data, RAS)
    volume = read_volume(tmp_path / "v.nii.gz")
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.to_source_orientation(volume.array), data.astype(np.float32))


def test_spacing_follows_canonical_axes(tmp_path: Path) -> None:
    save_nifti(tmp_path / "v.nii.gz", np.zeros((4, 5, 6), np.int16), RAS)  # x 0.8, y 0.7, z 2.5
    assert read_volume(tmp_path / "v.nii.gz").spacing == pytest.approx((2.5, 0.7, 0.8))


def test_volume_from_array_matches_file_reading(tmp_path: Path) -> None:
    data = _marker_volume()
    save_nifti(tmp_path / "v.nii.gz", data, LPS, np.int16)
    np.testing.assert_array_equal(
        volume_from_array(data, LPS).array, read_volume(tmp_path / "v.nii.gz").array
    )


# ---- bad input: one clear error naming the file ----------------------------------------------------


def _expect_error(path: Path, fragment: str, label: bool = False) -> None:
    with pytest.raises(NephrosegInputError) as info:
        read_volume(path, label=label)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nope.nii.gz", "file not found")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    _expect_error(tmp_path, "is a folder")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    _expect_error(tmp_path / "empty.nii.gz", "empty")


def test_truncated_gzip(tmp_path: Path) -> None:
    path = save_nifti(
        tmp_path / "t.nii.gz", np.random.default_rng(0).normal(size=(20, 30, 30)), RAS, np.float32
    )
    payload = path.read_bytes()
    path.write_bytes(payload[: len(payload) // 2])
    _expect_error(path, "truncated or corrupt")


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "junk.nii.gz"
    path.write_bytes(gzip.compress(b"not an image at all" * 40))
    _expect_error(path, "not a readable NIfTI")


def test_2d_and_4d_refused(tmp_path: Path) -> None:
    _expect_error(
        save_nifti(tmp_path / "flat.nii.gz", np.zeros((5, 6), np.int16), RAS), "expected a 3D volume"
    )
    _expect_error(save_nifti(tmp_path / "time.nii.gz", np.zeros((3, 4, 5, 2), np.int16), RAS), "4D")


def test_trailing_singleton_axis_accepted_and_kept_in_the_output(tmp_path: Path) -> None:
    stored = _marker_volume((3, 4, 5))[..., None]
    volume = read_volume(save_nifti(tmp_path / "v.nii.gz", stored, LPS))
    assert volume.array.shape == (5, 4, 3)  # canonical I-P-L of an L-P-S file
    written = nib.load(write_like(volume.array.astype(np.int16), volume, tmp_path / "out.nii.gz", np.int16))
    assert written.shape == (3, 4, 5, 1) and np.array_equal(np.asanyarray(written.dataobj), stored)
    assert np.allclose(written.affine, LPS, atol=1e-6)


def test_nan_voxels_refused(tmp_path: Path) -> None:
    data = np.zeros((3, 4, 5), np.float32)
    data[0, 0, :2] = np.nan
    data[1, 1, 1] = np.inf
    _expect_error(save_nifti(tmp_path / "nan.nii.gz", data, RAS), "2 NaN and 1 infinite")


def test_zero_spacing_refused(tmp_path: Path) -> None:
    image = nib.Nifti1Image(np.zeros((3, 4, 5), np.int16), np.eye(4))
    image.header.set_qform(None, code=0)
    image.header["srow_z"] = [0, 0, 0, 0]  # the sform (code 2) now maps every slice to one plane
    image.update_header = lambda: None  # keep nibabel from re-deriving the header on save
    nib.save(image, tmp_path / "z.nii.gz")
    _expect_error(tmp_path / "z.nii.gz", "has a zero axis")


def test_label_values_outside_kits_classes(tmp_path: Path) -> None:
    data = np.zeros((3, 4, 5), np.uint8)
    data[0, 0, 0], data[1, 1, 1] = 3, 7
    _expect_error(save_nifti(tmp_path / "lab.nii.gz", data, RAS), "outside {0, 1, 2}: 3, 7", label=True)


def test_label_with_fractional_values_refused(tmp_path: Path) -> None:
    data = np.full((2, 2, 2), 0.5, np.float32)
    _expect_error(save_nifti(tmp_path / "lab.nii.gz", data, RAS), "non-integer", label=True)


# ---- atomic writes ----------------------------------------------------------------------------------


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "result.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed mid-write")
    assert files_under(tmp_path) == []


def test_atomic_write_keeps_previous_content_until_complete(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    atomic_write_text(target, "old")
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_text("new but unfinished")
        raise ValueError
    assert target.read_text() == "old"
    assert files_under(tmp_path) == ["notes.txt"]


def test_atomic_write_gives_normal_file_permissions(tmp_path: Path) -> None:
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    atomic_write_text(tmp_path / "report.md", "x")
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o666 & ~umask


def test_c_order_copies_any_view_value_for_value() -> None:
    from nephroseg.io.volume import c_order

    base = np.arange(5 * 37 * 6, dtype=np.int16).reshape(5, 37, 6)
    views = (np.asfortranarray(base), base.transpose(2, 1, 0)[::-1, ::-2], base[:, 3:30:3], base[0, :, 0])
    for view in views:
        out = c_order(view, rows=4)
        assert out.flags.c_contiguous and out.dtype == view.dtype
        np.testing.assert_array_equal(out, view)
    assert c_order(base) is base  # already in order: no copy


def test_exclusive_folder_admits_one_job_at_a_time(tmp_path: Path) -> None:
    from nephroseg.io.lock import exclusive_folder

    run = tmp_path / "run"
    with exclusive_folder(run, "training") as fresh:
        assert fresh and run.is_dir()
        second = pytest.raises(NephrosegInputError, match="another nephroseg training is running")
        with second, exclusive_folder(run, "training"):
            pass
        (run / "log.csv").write_text("epoch\n")
    with exclusive_folder(run, "training") as fresh:  # released with the first job
        assert not fresh


@pytest.mark.parametrize("leaves_a_file", [False, True])
def test_exclusive_folder_removes_only_an_empty_folder_it_made(tmp_path: Path, leaves_a_file: bool) -> None:
    from nephroseg.io.lock import exclusive_folder

    made, existing = tmp_path / "made", tmp_path / "existing"
    existing.mkdir()
    for folder in (made, existing):
        with pytest.raises(RuntimeError), exclusive_folder(folder, "training"):
            if leaves_a_file:
                (folder / "cache").write_text("x")
            raise RuntimeError("the job failed")
    assert made.exists() is leaves_a_file and existing.is_dir()


def test_a_file_system_without_locks_runs_the_job_unguarded(tmp_path: Path, monkeypatch) -> None:
    """Lustre mounted without flock answers ENOSYS: the job runs (unguarded) instead of failing."""
    import errno
    import fcntl

    from nephroseg.io import lock

    def no_flock(handle, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with lock.exclusive_folder(tmp_path / "run", "training") as fresh, lock.folder_held(tmp_path):
        assert fresh
