"""Evaluation protocol: k-fold cross-validation with out-of-fold scores, sweeps, fold ensembles, and
ensemble averaging against a hand computation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import blob_case, kits_affine, save_nifti
from torch import nn

from nephroseg.errors import NephrosegInputError
from nephroseg.inference import SegmentationModel, Segmenter
from nephroseg.inference.predict import load_models
from nephroseg.inference.segmenter import tta_flips, tumor_across_slices
from nephroseg.inference.sliding import make_segmenter
from nephroseg.recipe import AugmentSpec, load_recipe
from nephroseg.training.crossval import cross_validate
from nephroseg.training.sweep import sweep


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    root = tmp_path / "kits"
    for i in range(4):
        image, label = blob_case(seed=i)
        affine = kits_affine((3.0, 1.5, 1.5))
        save_nifti(root / f"case_{i:05d}" / "imaging.nii.gz", image, affine, np.int16)
        save_nifti(root / f"case_{i:05d}" / "segmentation.nii.gz", label, affine, np.uint8)
    return root


@pytest.mark.parametrize("recipe_name", ["resunet25d", "nnunet3d"])
def test_cross_validation_predicts_every_case_once_and_resumes(
    cohort: Path, tmp_path: Path, recipe_name: str
) -> None:
    recipe = load_recipe(recipe_name, profile="tiny")
    out = tmp_path / "cv"
    result = cross_validate(cohort, recipe, out, folds=2, progress=False)
    assert len(result.per_fold) == 2
    assert sorted(result.pooled.per_case) == [f"case_{i:05d}" for i in range(4)]
    held_out = [json.loads((out / f"fold_{k}" / "split.json").read_text())["val"] for k in range(2)]
    assert sorted(held_out[0] + held_out[1]) == sorted(result.pooled.per_case)
    pooled_mean = np.mean([m["composite_dice"] for m in result.pooled.per_case.values()])
    assert result.pooled.composite_dice == pytest.approx(pooled_mean)
    assert (out / "folds.csv").read_text().splitlines()[-1].startswith("pooled,")
    stamp = (out / "fold_0" / "checkpoints" / "last.pt").stat().st_mtime_ns
    again = cross_validate(cohort, recipe, out, folds=2, progress=False)
    assert (out / "fold_0" / "checkpoints" / "last.pt").stat().st_mtime_ns == stamp  # nothing retrained
    assert again.pooled.per_case == result.pooled.per_case
    assert len(load_models([out], torch.device("cpu"))) == 2  # --model CV ensembles the folds


def test_sweep_trains_one_run_per_value(cohort: Path, tmp_path: Path) -> None:
    recipe = load_recipe("resunet25d", profile="tiny")
    points = sweep(cohort, recipe, tmp_path / "sweep", "train.lr", ["1e-3", "1e-4"], progress=False)
    assert [p.value for p in points] == [1e-3, 1e-4]
    assert all(0.0 <= p.best_composite_dice <= 1.0 for p in points)
    lines = (tmp_path / "sweep" / "sweep.csv").read_text().splitlines()
    assert lines[0] == "train.lr,best_val_composite_dice,run" and len(lines) == 3


class ConstantLogits(torch.nn.Module):
    """Ignores its input and predicts the same logits everywhere."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[None, :, None, None].expand(x.shape[0], -1, *x.shape[-2:])


class BrightIsKidney(torch.nn.Module):
    """Kidney wherever the centre slice is bright, background elsewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre = x[:, x.shape[1] // 2 : x.shape[1] // 2 + 1]
        return torch.cat([torch.zeros_like(centre), 10 * (centre - 0.75), torch.zeros_like(centre)], dim=1)


def test_segmenter_postprocesses_when_training_chose_it() -> None:
    hu = np.full((6, 32, 40), -100.0, np.float32)
    hu[1:5, 8:20, 4:14] = 250.0  # a kidney on one side
    hu[2:3, 26:29, 15:18] = 250.0  # a small bright island on the same side
    hu[1:5, 8:20, 26:36] = 250.0  # the other kidney
    chosen = load_recipe("resunet25d", profile="tiny", overrides=["train.postprocess=components"])
    plain = load_recipe("resunet25d", profile="tiny")
    with_choice = Segmenter([SegmentationModel(BrightIsKidney(), chosen)]).segment(hu, (3.0, 1.0, 1.0))
    without = Segmenter([SegmentationModel(BrightIsKidney(), plain)]).segment(hu, (3.0, 1.0, 1.0))
    assert without[2, 26:29, 15:18].all() and not with_choice[2, 26:29, 15:18].any()
    np.testing.assert_array_equal(with_choice[:, :24], without[:, :24])  # both kidneys kept
    assert with_choice[1:5, 8:20, 4:14].all() and with_choice[1:5, 8:20, 26:36].all()


def test_ensemble_averages_probabilities_by_hand() -> None:
    recipe = load_recipe("resunet25d", profile="tiny")
    a = SegmentationModel(ConstantLogits([2.0, 0.0, 0.0]), recipe)
    b = SegmentationModel(ConstantLogits([0.0, 0.0, 3.0]), recipe)
    hu = np.zeros((3, 10, 12), np.float32)
    (_, probs), *_ = Segmenter([a, b], batch_size=8).probabilities(hu, (3.0, 1.0, 1.0))
    e2, e3 = np.exp(2.0), np.exp(3.0)
    by_hand = (np.array([e2, 1, 1]) / (e2 + 2) + np.array([1, 1, e3]) / (e3 + 2)) / 2
    np.testing.assert_allclose(probs[0, :, 5, 6].numpy(), by_hand, rtol=1e-6)
    # Alone, a says background (0.79) and b says tumor (0.91); averaged, tumor wins (0.51 vs 0.42).
    assert by_hand.argmax() == 2
    labels = Segmenter([a, b]).segment(hu, (3.0, 1.0, 1.0))
    assert set(np.unique(labels)) == {2}


def test_slab_by_slab_preparation_equals_the_whole_volume_at_once(monkeypatch) -> None:
    """The segmenter prepares only the slices a batch needs (bounded memory for long volumes); the
    probabilities equal those of the whole volume resampled, normalized and stacked at once."""
    from nephroseg.inference import segmenter as segmenter_module
    from nephroseg.models import build_model
    from nephroseg.preprocess import (
        inplane_shape,
        neighbour_indices,
        normalize_hu,
        pad_to_multiple,
        padding_value,
        resize_slices,
        unpad,
    )

    recipe = load_recipe("resunet25d", profile="tiny", overrides=["preprocess.spacing_mm=2.0"])
    torch.manual_seed(0)
    network = build_model(recipe.model).eval()
    model = SegmentationModel(network, recipe)
    hu = np.random.default_rng(3).normal(40, 150, size=(11, 40, 48)).astype(np.float32)
    spacing = (3.0, 1.5, 1.5)
    prepared_sizes: list[int] = []
    real_resize = segmenter_module.resize_slices

    def spy(array, out_hw, **kwargs):
        if np.ndim(array) == 3:  # a slab of intensities (probabilities are 4D)
            prepared_sizes.append(len(array))
        return real_resize(array, out_hw, **kwargs)

    monkeypatch.setattr(segmenter_module, "resize_slices", spy)
    batches = list(Segmenter([model], batch_size=3).probabilities(hu, spacing))
    slab_wise = torch.cat([probs for _, probs in batches])

    spec, k = recipe.preprocess, recipe.model.in_slices
    whole = normalize_hu(resize_slices(hu, inplane_shape(hu.shape[1:], spacing[1:], 2.0)).numpy(), spec)
    padded, pad = pad_to_multiple(torch.from_numpy(whole), model.divisor, padding_value(spec))
    stacks = padded[torch.from_numpy(neighbour_indices(np.arange(len(hu)), len(hu), k))]
    with torch.no_grad():
        reference = resize_slices(unpad(torch.softmax(network(stacks), dim=1), pad), (40, 48))
    torch.testing.assert_close(slab_wise, reference, rtol=1e-4, atol=1e-5)
    assert [start for start, _ in batches] == [0, 3, 6, 9]
    assert max(prepared_sizes) == 3 + k - 1  # a batch and its neighbours, never the volume


def test_flip_tta_of_a_symmetric_model_changes_nothing() -> None:
    recipe = load_recipe("resunet25d", profile="tiny")
    model = SegmentationModel(ConstantLogits([0.0, 1.0, 0.5]), recipe)
    hu = np.random.default_rng(0).normal(size=(2, 9, 7)).astype(np.float32)
    (_, plain), *_ = Segmenter([model]).probabilities(hu, (3.0, 1.0, 1.0))
    (_, flipped), *_ = Segmenter([model], tta=True).probabilities(hu, (3.0, 1.0, 1.0))
    torch.testing.assert_close(plain, flipped)


def test_tta_uses_only_the_mirrorings_the_model_was_trained_with() -> None:
    assert tta_flips(AugmentSpec(hflip_p=0.5), tta=True) == [(), (-1,)]
    assert tta_flips(AugmentSpec(hflip_p=0.5, vflip_p=0.5), tta=True) == [(), (-1,), (-2,), (-2, -1)]
    assert tta_flips(AugmentSpec(), tta=True) == [()]
    assert tta_flips(AugmentSpec(hflip_p=0.5), tta=False) == [()]


def test_tta_averages_the_prediction_and_its_mirror() -> None:
    """A model whose tumor logit grows left to right: mirrored and averaged, it is flat."""

    class Ramp(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            ramp = torch.linspace(0, 2, x.shape[-1]).expand(x.shape[0], 1, *x.shape[-2:])
            return torch.cat([torch.zeros_like(ramp), torch.zeros_like(ramp), ramp], dim=1)

    recipe = load_recipe("resunet25d", profile="tiny")  # trained with horizontal flips only
    model = SegmentationModel(Ramp(), recipe)
    hu = np.zeros((1, 64, 64), np.float32)
    (_, plain), *_ = Segmenter([model]).probabilities(hu, (3.0, 1.0, 1.0))
    (_, averaged), *_ = Segmenter([model], tta=True).probabilities(hu, (3.0, 1.0, 1.0))
    torch.testing.assert_close(averaged, (plain + plain.flip(-1)) / 2)
    assert float(plain[0, 2, 0, -1] - plain[0, 2, 0, 0]) > 0.3


@pytest.mark.parametrize(
    ("tta", "recipe_mirrors", "expected"),
    [(None, True, True), (False, True, False), (True, False, True), (None, False, False)],
)
def test_slice_models_mirror_as_their_recipe_says_unless_told(tta, recipe_mirrors, expected) -> None:
    recipe = load_recipe("resunet25d", profile="tiny", overrides=[f"train.mirror_tta={recipe_mirrors}"])
    model = SegmentationModel(ConstantLogits([0.0, 1.0, 0.5]), recipe)
    segmenter = make_segmenter([model], torch.device("cpu"), tta=tta)
    assert segmenter.tta is expected


def test_bf16_autocast_agrees_with_float32(trained_run) -> None:
    _, run = trained_run
    (model,) = load_models([run], torch.device("cpu"))
    hu = np.random.default_rng(1).normal(40, 80, size=(4, 40, 48)).astype(np.float32)
    (_, fp32), *_ = Segmenter([model]).probabilities(hu, (3.0, 1.5, 1.5))
    (_, bf16), *_ = Segmenter([model], precision="bf16").probabilities(hu, (3.0, 1.5, 1.5))
    assert fp32.dtype == bf16.dtype == torch.float32
    assert float((fp32 - bf16).abs().max()) < 0.05
    assert float((fp32.argmax(1) == bf16.argmax(1)).float().mean()) > 0.98


class WidthLogits(nn.Module):
    """Tumor logit = input width / 10 everywhere: its output tells which zoom it was given."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tumor = torch.full((x.shape[0], 1, *x.shape[-2:]), x.shape[-1] / 10.0)
        return torch.cat([torch.zeros_like(tumor), torch.zeros_like(tumor), tumor], dim=1)


def test_zoomed_views_average_the_model_at_each_scale_by_hand() -> None:
    recipe = load_recipe("resunet25d", profile="tiny", overrides=["preprocess.spacing_mm=2.0"])
    model = SegmentationModel(WidthLogits(), recipe)
    hu = np.zeros((2, 40, 48), np.float32)  # 1.5 mm: 36 columns at 2 mm, 72 at 1 mm (zoom 2)
    (_, probs), *_ = Segmenter([model], scales=(1.0, 2.0)).probabilities(hu, (3.0, 1.5, 1.5))
    widths = [-(-w // model.divisor) * model.divisor for w in (36, 72)]  # padded to the divisor

    def softmax(tumor: float) -> np.ndarray:
        e = np.exp([0.0, 0.0, tumor])
        return e / e.sum()

    by_hand = (softmax(widths[0] / 10) + softmax(widths[1] / 10)) / 2
    np.testing.assert_allclose(probs[1, :, 20, 24].numpy(), by_hand, rtol=1e-5)
    assert probs.shape == (2, 3, 40, 48)  # back on the volume's own grid


def test_zoomed_views_need_a_fixed_grid_and_positive_factors() -> None:
    native = load_recipe("resunet25d", profile="tiny")  # spacing_mm null: the slices as they come
    with pytest.raises(ValueError, match="fixed grid"):
        Segmenter([SegmentationModel(WidthLogits(), native)], scales=(1.0, 1.2))
    with pytest.raises(NephrosegInputError, match="tta_scales"):
        load_recipe("resunet25d", profile="tiny", overrides=["train.tta_scales=[1.0, 0.0]"])


@pytest.mark.parametrize(("tta", "expected"), [(None, (1.0, 1.2)), (True, (1.0, 1.2)), (False, (1.0,))])
def test_slice_models_zoom_as_their_recipe_says_unless_tta_is_off(tta, expected) -> None:
    recipe = load_recipe(
        "resunet25d", profile="tiny", overrides=["preprocess.spacing_mm=2.0", "train.tta_scales=[1.2, 1.0]"]
    )
    segmenter = make_segmenter([SegmentationModel(WidthLogits(), recipe)], torch.device("cpu"), tta=tta)
    assert segmenter.scales == expected


def test_memory_estimate_counts_every_zoomed_view() -> None:
    from nephroseg.inference.predict import _slice_estimator
    from nephroseg.models import build_model

    recipe = load_recipe("resunet25d", profile="tiny", overrides=["preprocess.spacing_mm=2.0"])
    model = SegmentationModel(build_model(recipe.model).eval(), recipe)
    shape, spacing = (4, 200, 240), (3.0, 1.5, 1.5)
    plain = _slice_estimator(Segmenter([model]))(shape, spacing)
    zoomed = _slice_estimator(Segmenter([model], scales=(1.0, 2.0)))(shape, spacing)
    # The zoom-2 view has four times the pixels of the plain one, on top of it.
    assert zoomed > 2 * plain - shape[0] * shape[1] * shape[2] * 5


def test_make_segmenter_zooms_replace_the_recipes_unless_tta_is_off() -> None:
    recipe = load_recipe("resunet25d", profile="tiny", overrides=["preprocess.spacing_mm=2.0"])
    model = SegmentationModel(WidthLogits(), recipe)  # its recipe keeps one zoom
    cpu = torch.device("cpu")
    assert make_segmenter([model], cpu).scales == (1.0,)
    assert make_segmenter([model], cpu, scales=(1.0, 1.2)).scales == (1.0, 1.2)
    assert make_segmenter([model], cpu, tta=False, scales=(1.0, 1.2)).scales == (1.0,)
    volumetric = SegmentationModel(WidthLogits(), load_recipe("nnunet3d", profile="tiny"))
    with pytest.raises(ValueError, match="are for 2D"):
        make_segmenter([volumetric], cpu, scales=(1.0, 1.2))


def _stream(probs: np.ndarray, sizes: list[int]):
    """``probs`` (Z, 3, H, W) as the segmenter yields them, in batches of ``sizes`` slices."""
    start = 0
    for size in sizes:
        yield start, torch.from_numpy(probs[start : start + size])
        start += size


def _labels(batches) -> np.ndarray:
    return np.concatenate([labels for _, labels in batches])


def test_tumor_across_slices_by_hand() -> None:
    """Pixel A: one slice calls tumor between kidney calls; summed with its neighbours it is kidney.
    Pixel B: a tumor whose second slice leans to kidney; summed, it is tumor on all three, and the
    slice the model calls background stays background."""
    a = [(0.1, 0.6, 0.3), (0.1, 0.4, 0.5), (0.1, 0.6, 0.3), (0.1, 0.6, 0.3)]  # tumor − kidney −.3 +.1 −.3 −.3
    b = [(0.2, 0.3, 0.5), (0.1, 0.5, 0.4), (0.1, 0.3, 0.6), (0.7, 0.1, 0.2)]  # +.2 −.1 +.3 +.1
    probs = np.array([a, b], np.float32).transpose(1, 2, 0)[..., None]  # (Z=4, 3, H=2, W=1)
    own = probs.argmax(1)[:, :, 0].T
    np.testing.assert_array_equal(own, [[1, 2, 1, 1], [2, 1, 2, 0]])
    for sizes in ([4], [1, 1, 1, 1], [3, 1], [1, 3], [2, 2]):  # the batches do not matter
        labels = _labels(tumor_across_slices(_stream(probs, sizes)))
        np.testing.assert_array_equal(labels[:, :, 0].T, [[1, 1, 1, 1], [2, 2, 2, 0]])


def test_tumor_across_slices_is_a_three_slice_sum_of_the_margin() -> None:
    from scipy.ndimage import convolve1d

    probs = np.random.default_rng(0).dirichlet([1, 1, 1], size=(9, 5, 6)).transpose(0, 3, 1, 2)
    probs = probs.astype(np.float32)
    summed = convolve1d(probs[:, 2] - probs[:, 1], [1.0, 1.0, 1.0], axis=0, mode="constant")
    expected = np.where(probs.argmax(1) > 0, np.where(summed > 0, 2, 1), 0)
    labels = _labels(tumor_across_slices(_stream(probs, [4, 4, 1])))
    np.testing.assert_array_equal(labels, expected)
    assert (labels != probs.argmax(1)).any()


class CentreDecidesTumor(nn.Module):
    """Kidney everywhere, tumor instead where the centre slice is above 0 HU (the window maps it to 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre = x[:, x.shape[1] // 2 : x.shape[1] // 2 + 1]
        kidney = torch.full_like(centre, 2.0)
        return torch.cat([torch.zeros_like(centre), kidney, kidney + 8 * centre], dim=1)


def test_segmenter_tells_tumor_across_slices_when_the_recipe_says() -> None:
    hu = np.full((5, 8, 8), -50.0, np.float32)
    hu[2] = 20.0  # one slice looks like tumor, its neighbours like kidney
    hu[:, :, 4:] = 60.0  # a tumor through every slice on the right
    on = load_recipe("resunet25d", profile="tiny", overrides=["train.tumor_across_slices=true"])
    off = load_recipe("resunet25d", profile="tiny")
    cpu = torch.device("cpu")
    with_slices = make_segmenter([SegmentationModel(CentreDecidesTumor(), on)], cpu)
    alone = make_segmenter([SegmentationModel(CentreDecidesTumor(), off)], cpu)
    assert with_slices.tumor_across_slices and not alone.tumor_across_slices
    labels, plain = with_slices.segment(hu, (3.0, 1.0, 1.0)), alone.segment(hu, (3.0, 1.0, 1.0))
    assert (plain[2, :, :4] == 2).all() and (labels[2, :, :4] == 1).all()
    assert (plain[:, :, 4:] == 2).all() and (labels[:, :, 4:] == 2).all()
    np.testing.assert_array_equal(np.delete(labels, 2, axis=0), np.delete(plain, 2, axis=0))


def test_tumor_across_slices_needs_the_kits_classes() -> None:
    recipe = load_recipe("resunet25d", profile="tiny", overrides=["model.num_classes=2"])
    with pytest.raises(ValueError, match="3 KiTS classes"):
        Segmenter([SegmentationModel(ConstantLogits([0.0, 1.0]), recipe)], tumor_across_slices=True)
