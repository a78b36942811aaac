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

from nephroseg.inference import SegmentationModel, Segmenter
from nephroseg.inference.predict import load_models
from nephroseg.inference.segmenter import tta_flips
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


def test_cross_validation_predicts_every_case_once_and_resumes(cohort: Path, tmp_path: Path) -> None:
    recipe = load_recipe("resunet25d", profile="tiny")
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


def test_bf16_autocast_agrees_with_float32(trained_run) -> None:
    _, run = trained_run
    (model,) = load_models([run], torch.device("cpu"))
    hu = np.random.default_rng(1).normal(40, 80, size=(4, 40, 48)).astype(np.float32)
    (_, fp32), *_ = Segmenter([model]).probabilities(hu, (3.0, 1.5, 1.5))
    (_, bf16), *_ = Segmenter([model], bf16=True).probabilities(hu, (3.0, 1.5, 1.5))
    assert fp32.dtype == bf16.dtype == torch.float32
    assert float((fp32 - bf16).abs().max()) < 0.05
    assert float((fp32.argmax(1) == bf16.argmax(1)).float().mean()) > 0.98
