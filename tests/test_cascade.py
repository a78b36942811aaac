"""The 2.5D cascade: boxes around each kidney, refine-stage training crops, the coarse → refine
segmenter, and train → predict with --coarse-model through the command line."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

from nephroseg.errors import NephrosegInputError
from nephroseg.inference.cascade import KidneyCropSegmenter
from nephroseg.inference.postprocess import postprocess_labels
from nephroseg.inference.segmenter import SegmentationModel
from nephroseg.inference.sliding import make_segmenter
from nephroseg.io import find_cases
from nephroseg.models import build_model
from nephroseg.preprocess import kidney_boxes, prepare_kidney_crops
from nephroseg.recipe import load_recipe
from tests.conftest import blob_case, kits_affine, save_nifti


def _two_kidneys() -> np.ndarray:
    """(20, 60, 80) labels: a kidney with tumor on each side, and a 1-voxel speck."""
    labels = np.zeros((20, 60, 80), np.uint8)
    labels[5:11, 20:30, 10:18] = 1  # right kidney (low x), 480 voxels
    labels[7:9, 24:26, 12:14] = 2
    labels[8:15, 30:42, 60:70] = 1  # left kidney, 840 voxels
    labels[0, 0, 40] = 1  # a speck on the midline's left side, smaller than the left kidney
    return labels


def test_kidney_boxes_centre_each_kidney_with_a_fixed_width() -> None:
    boxes = kidney_boxes(_two_kidneys(), (2.0, 1.5, 1.5), half_width_mm=12.0, z_margin_mm=4.0)
    # z: the kidney's slices ± ceil(4 / 2) = 2; in-plane: the centre ± 12 / 1.5 = 8 voxels.
    assert boxes == [
        (slice(3, 13), slice(17, 33), slice(6, 22)),  # right kidney, centre (25, 14)
        (slice(6, 17), slice(28, 44), slice(57, 73)),  # left kidney, centre (36, 65)
    ]


def test_kidney_boxes_split_a_component_joined_across_the_midline() -> None:
    kidneys = _two_kidneys()
    kidneys[0, 0, 40] = 0
    joined = kidneys.copy()
    joined[9, 29, 18:61] = 1  # a weak coarse pass's bridge through the spine: one component
    right, left = kidney_boxes(joined, (2.0, 1.5, 1.5), half_width_mm=30.0, z_margin_mm=4.0)
    # One box per side (centres x 25 and 55.5 ± 20 voxels), each holding its whole kidney.
    assert (right[2], left[2]) == (slice(5, 45), slice(36, 76))
    right_kidney, left_kidney = kidneys.copy(), kidneys.copy()
    right_kidney[..., 40:], left_kidney[..., :40] = 0, 0
    assert np.count_nonzero(right_kidney[right]) == np.count_nonzero(right_kidney) == 480
    assert np.count_nonzero(left_kidney[left]) == np.count_nonzero(left_kidney) == 840


def test_kidney_boxes_skip_specks_under_one_millilitre() -> None:
    labels = _two_kidneys()
    assert kidney_boxes(labels, (1.0, 1.0, 1.0), 12.0) == []  # 480 and 840 mm³
    (left,) = kidney_boxes(labels, (1.0, 1.2, 1.2), 12.0)  # 0.69 and 1.21 ml: the left one only
    assert left[2] == slice(55, 75)
    assert kidney_boxes(np.zeros((4, 8, 8), np.uint8), (1.0, 1.0, 1.0), 12.0) == []


def test_prepare_kidney_crops_cuts_each_kidney_then_resamples(tmp_path: Path) -> None:
    image, label = blob_case(shape=(12, 40, 48))
    root = tmp_path / "kits"
    affine = kits_affine((3.0, 1.5, 1.5))
    save_nifti(root / "case_00000" / "imaging.nii.gz", image, affine, np.int16)
    save_nifti(root / "case_00000" / "segmentation.nii.gz", label, affine, np.uint8)
    (case,) = find_cases(root)

    crops = prepare_kidney_crops(case, None, half_width_mm=9.0, cache_dir=tmp_path / "cache")
    assert len(crops) == 1  # blob_case has one kidney
    crop = crops[0]
    assert crop.case_id == "case_00000-kidney0"
    # Canonical arrays equal the stored ones for I-P-L; the box is the kidney ± 9 mm = ± 6 voxels.
    (box,) = kidney_boxes(label, (3.0, 1.5, 1.5), 9.0)
    assert crop.hu.shape == label[box].shape == (crop.hu.shape[0], 12, 12)
    np.testing.assert_array_equal(crop.label, label[box])
    np.testing.assert_array_equal(crop.hu, image[box])
    assert np.count_nonzero(crop.label == 2) == np.count_nonzero(label == 2)  # the whole tumor is in

    again = prepare_kidney_crops(case, None, 9.0, cache_dir=tmp_path / "cache")  # from the cache
    np.testing.assert_array_equal(np.asarray(again[0].label), crop.label)
    half = prepare_kidney_crops(case, 3.0, 9.0)  # resampled after cutting: 12 voxels of 1.5 → 6 of 3
    assert half[0].hu.shape[1:] == (6, 6) and half[0].spacing == (3.0, 3.0, 3.0)


def test_prepare_kidney_crops_needs_labels(tmp_path: Path) -> None:
    image, _ = blob_case()
    save_nifti(tmp_path / "kits" / "case_00000" / "imaging.nii.gz", image, kits_affine((3, 1.5, 1.5)))
    (case,) = find_cases(tmp_path / "kits")
    with pytest.raises(NephrosegInputError, match="labelled cases only"):
        prepare_kidney_crops(case, None, 9.0)


class _Fixed:
    """A stand-in segmenter returning fixed labels, post-processed as a Segmenter would."""

    def __init__(
        self, labels: np.ndarray, half_width_mm: float | None = None, postprocess: bool = False
    ) -> None:
        self.labels = labels
        self.calls: list[tuple[int, ...]] = []
        recipe = SimpleNamespace(preprocess=SimpleNamespace(kidney_crop_mm=half_width_mm))
        self.models = [SimpleNamespace(recipe=recipe)]
        self.postprocess = postprocess

    def segment(self, hu: np.ndarray, spacing) -> np.ndarray:
        self.calls.append(hu.shape)
        labels = self.labels[: hu.shape[0], : hu.shape[1], : hu.shape[2]].copy()
        return postprocess_labels(labels) if self.postprocess else labels


def test_cascade_refines_inside_each_box_and_clears_the_rest() -> None:
    coarse_labels = _two_kidneys()
    coarse_labels[0, 0, 79] = 2  # a coarse speck far from the kidneys: dropped
    fine = _Fixed(np.full((20, 60, 80), 1, np.uint8), half_width_mm=40.0)
    fine.labels[:, :5] = 2  # the first five rows of every box come back as tumor
    cascade = KidneyCropSegmenter(_Fixed(coarse_labels), fine)  # type: ignore[arg-type]
    out = cascade.segment(np.zeros((20, 60, 80), np.int16), (2.0, 1.5, 1.5))

    expected = np.zeros_like(out)
    # Boxes: the kidneys' slices ± ceil(10 / 2) = 5, their centres ± 40 / 1.5 = 26.7 voxels, clipped;
    # they overlap in columns 38–40, where tumor beats kidney.
    for z, y, x in [(slice(0, 16), slice(0, 52), slice(0, 41)), (slice(3, 20), slice(9, 60), slice(38, 80))]:
        expected[z, y, x] = np.maximum(expected[z, y, x], 1)
        expected[z, y.start : y.start + 5, x] = 2
    np.testing.assert_array_equal(out, expected)
    assert fine.calls == [(16, 52, 41), (17, 51, 42)]


def test_cascade_boxes_come_from_the_coarse_labels_before_post_processing() -> None:
    """A false blob below the kidneys, across the midline, larger than the left kidney but with
    less than it on either side: the coarse post-processing (largest component per side, midline
    kept) would keep the blob and drop the kidney; the boxes clear the midline and find both."""
    coarse_labels = _two_kidneys()
    coarse_labels[0, 0, 40] = 0
    coarse_labels[16:20, 40:55, 33:52] = 1  # 1140 voxels, centre column 42: left of the midline
    spacing = (2.0, 1.5, 1.5)
    assert np.count_nonzero(postprocess_labels(coarse_labels)[8:15, 30:42, 60:70]) == 0

    fine = _Fixed(np.zeros((20, 60, 80), np.uint8), half_width_mm=12.0)
    cascade = KidneyCropSegmenter(_Fixed(coarse_labels, postprocess=True), fine)  # type: ignore[arg-type]
    right, left = cascade.boxes(np.zeros((20, 60, 80), np.int16), spacing)
    assert (right[0], left[0]) == (slice(0, 16), slice(3, 20))  # the kidneys' slices ± 5
    assert left[2] == slice(57, 73)  # centred on the left kidney (column 65), not the blob


def test_cascade_needs_kidney_crop_refine_models() -> None:
    with pytest.raises(ValueError, match="kidney-crop models"):
        KidneyCropSegmenter(_Fixed(_two_kidneys()), _Fixed(_two_kidneys()))  # type: ignore[arg-type]


def _tiny(*overrides: str) -> SegmentationModel:
    recipe = load_recipe("resunet25d", profile="tiny", overrides=list(overrides))
    return SegmentationModel(build_model(recipe.model).eval(), recipe)


def test_make_segmenter_pairs_kidney_crop_models_with_a_coarse_one() -> None:
    cpu = torch.device("cpu")
    refine, whole = _tiny("preprocess.kidney_crop_mm=60"), _tiny()
    assert isinstance(make_segmenter([refine], cpu, coarse_models=[whole]), KidneyCropSegmenter)
    with pytest.raises(NephrosegInputError, match="needs --coarse-model"):
        make_segmenter([refine], cpu)
    with pytest.raises(NephrosegInputError, match="only when trained on kidney crops"):
        make_segmenter([whole], cpu, coarse_models=[whole])
    with pytest.raises(NephrosegInputError, match="cannot ensemble kidney-crop models"):
        make_segmenter([refine, whole], cpu, coarse_models=[whole])
    with pytest.raises(NephrosegInputError, match="is a kidney-crop model too: the kidneys are found by"):
        make_segmenter([refine], cpu, coarse_models=[refine])  # the two stages swapped or repeated
    volumetric = _tiny_volumetric()
    assert isinstance(make_segmenter([refine], cpu, coarse_models=[volumetric]), KidneyCropSegmenter)
    with pytest.raises(NephrosegInputError, match="--coarse-model: a 3D model's coarse stage is a 3D"):
        make_segmenter([volumetric], cpu, coarse_models=[whole])
    with pytest.raises(NephrosegInputError, match=r"--coarse-model: cannot ensemble 3D models with 2D/2\.5D"):
        make_segmenter([refine], cpu, coarse_models=[whole, volumetric])


def _tiny_volumetric() -> SegmentationModel:
    """An untrained 3D model planned on a made-up fingerprint (the planning gives its normalization)."""
    from test_volumetric import _tiny_model

    return _tiny_model()


def test_both_stages_of_a_cascade_run_in_the_precision_asked() -> None:
    cascade = make_segmenter(
        [_tiny("preprocess.kidney_crop_mm=60")],
        torch.device("cpu"),
        coarse_models=[_tiny()],
        precision="bf16",
    )
    assert (cascade.coarse.precision, cascade.fine.precision) == ("bf16", "bf16")


def test_train_refine_stage_and_predict_with_coarse_model(trained_run, tmp_path: Path, capsys) -> None:
    """Through the command line: a kidney-crop model trained on the cohort, then predict with the
    shared whole-slice run as the coarse stage; the labels come back on the source grid. Either
    stage alone in the wrong role is refused in one line, with nothing written."""
    from test_cli import run_cli

    data, coarse_run = trained_run
    refine = tmp_path / "refine"
    tiny = ["--recipe", "resunet25d", "--profile", "tiny", "--device", "cpu", "--no-progress"]
    crops = ["--set", "train.iterations_per_epoch=2", "--set", "preprocess.kidney_crop_mm=24"]
    code, _, stderr = run_cli(["train", "--data", str(data), "--out", str(refine), *tiny, *crops], capsys)
    assert code == 0, stderr
    out = tmp_path / "pred"
    predict = ["predict", "-i", str(data), "-o", str(out), "--no-progress"]

    code, _, stderr = run_cli([*predict, "-m", str(refine)], capsys)
    assert code == 2 and "error: --model: a kidney-crop model needs --coarse-model" in stderr
    code, _, stderr = run_cli([*predict, "-m", str(coarse_run), "--coarse-model", str(coarse_run)], capsys)
    assert code == 2 and "only when trained on kidney crops" in stderr
    assert not out.exists()

    code, _, stderr = run_cli([*predict, "-m", str(refine), "--coarse-model", str(coarse_run)], capsys)
    assert code == 0, stderr
    for case in sorted(data.iterdir()):
        source = nib.load(case / "imaging.nii.gz")
        written = nib.load(out / f"{case.name}.nii.gz")
        assert written.shape == source.shape
        np.testing.assert_allclose(written.affine, source.affine)
