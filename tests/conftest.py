"""Shared fixtures: tiny volumes written to a temporary folder (tests never need ../shared)."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

SHARED_KITS = Path(__file__).resolve().parents[2] / "shared" / "kits19"


def kits_affine(spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """The affine KiTS19 ships: axis codes I-P-L."""
    sz, sy, sx = spacing_zyx
    return np.array([[0, 0, -sx, 0], [0, -sy, 0, 0], [-sz, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def save_nifti(path: Path, array: np.ndarray, affine: np.ndarray, dtype=None) -> Path:
    image = nib.Nifti1Image(np.asarray(array) if dtype is None else np.asarray(array).astype(dtype), affine)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return path


def blob_case(shape=(12, 40, 48), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like image with a kidney-like ellipsoid holding a tumor, and its label."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    cz, cy, cx = shape[0] / 2, shape[1] / 2, shape[2] / 3
    kidney = ((z - cz) / (shape[0] / 3)) ** 2 + ((y - cy) / 8) ** 2 + ((x - cx) / 6) ** 2 < 1
    tumor = ((z - cz) / 2.5) ** 2 + ((y - cy - 3) / 3) ** 2 + ((x - cx) / 3) ** 2 < 1
    label = np.zeros(shape, np.uint8)
    label[kidney] = 1
    label[tumor] = 2
    image = np.full(shape, -100.0) + rng.normal(0, 10, shape)
    image[label == 1] = 180 + rng.normal(0, 10, int((label == 1).sum()))
    image[label == 2] = 60 + rng.normal(0, 10, int((label == 2).sum()))
    return image.astype(np.int16), label


@pytest.fixture
def kits_dir(tmp_path: Path) -> Path:
    """Three labelled cases in the KiTS19 layout (I-P-L, int16 image, uint8 label)."""
    root = tmp_path / "kits"
    for i in range(3):
        image, label = blob_case(seed=i)
        affine = kits_affine((3.0, 1.5 + 0.1 * i, 1.5 + 0.1 * i))
        save_nifti(root / f"case_{i:05d}" / "imaging.nii.gz", image, affine, np.int16)
        save_nifti(root / f"case_{i:05d}" / "segmentation.nii.gz", label, affine, np.uint8)
    return root


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    """A KiTS-layout cohort and a two-step training run on it, shared by the CLI tests (read-only:
    tests must not write into it)."""
    from nephroseg.cli import main

    root = tmp_path_factory.mktemp("cli")
    data = root / "kits"
    for i in range(3):
        image, label = blob_case(seed=i)
        affine = kits_affine((3.0, 1.5, 1.5))
        save_nifti(data / f"case_{i:05d}" / "imaging.nii.gz", image, affine, np.int16)
        save_nifti(data / f"case_{i:05d}" / "segmentation.nii.gz", label, affine, np.uint8)
    run = root / "run"
    tiny = ["--recipe", "resunet25d", "--profile", "tiny", "--device", "cpu", "--no-progress"]
    main(["train", "--data", str(data), "--out", str(run), "--set", "train.iterations_per_epoch=2", *tiny])
    return data, run
