"""Helpers of the benchmark scripts that decide what is measured: checked against known answers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
from conftest import blob_case, kits_affine, save_nifti

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_slice_spacing_keeps_every_nth_slice_on_a_thicker_grid(tmp_path: Path):
    image, label = blob_case(shape=(25, 20, 24))
    affine = kits_affine((0.5, 0.8, 0.8))
    affine[:3, 3] = (10.0, -20.0, 30.0)
    case = tmp_path / "data" / "case_00003"
    save_nifti(case / "imaging.nii.gz", image, affine, np.int16)
    save_nifti(case / "segmentation.nii.gz", label, affine, np.uint8)
    step = load_bench("slice_spacing").thin_out(case, tmp_path / "thin", target_mm=3.0)
    assert step == 6  # 3.0 mm / 0.5 mm
    for name, source in (("imaging", image), ("segmentation", label)):
        thinned = nib.load(tmp_path / "thin" / "case_00003" / f"{name}.nii.gz")
        assert np.array_equal(np.asarray(thinned.dataobj), source[::6])  # slices 0, 6, 12, 18, 24
        assert thinned.shape == (5, 20, 24)
        # slice k of the thinned case lies where slice 6k of the source did
        np.testing.assert_allclose(thinned.affine @ [3, 7, 9, 1], affine @ [18, 7, 9, 1])
