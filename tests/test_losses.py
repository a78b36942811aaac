"""Losses against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from nephroseg.losses import SegmentationLoss, build_loss
from nephroseg.recipe import TrainSpec


def test_weighted_cross_entropy_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).T.reshape(1, 3, 1, 2)  # two pixels
    target = torch.tensor([[[0, 2]]])
    loss = SegmentationLoss([1.0, 1.0, 3.0], region=None, region_weight=0.0)(logits, target)
    nll0 = -math.log(math.exp(2) / (math.exp(2) + 2))
    nll1 = -math.log(math.e / (math.e + 2))
    assert float(loss) == pytest.approx((1 * nll0 + 3 * nll1) / (1 + 3), rel=1e-6)


def test_lovasz_of_a_single_pixel_is_one_minus_its_probability() -> None:
    """With one pixel the Lovász extension of the Jaccard loss is the pixel's error, 1 - p(true class),
    averaged over the classes present (only the true one)."""
    logits = torch.tensor([0.5, 1.0, -1.0]).reshape(1, 3, 1, 1)
    target = torch.tensor([[[1]]])
    p_true = torch.softmax(logits.flatten(), 0)[1].item()
    ce = -math.log(p_true)
    loss = SegmentationLoss([1.0, 1.0, 1.0], region="lovasz", region_weight=0.5)(logits, target)
    assert float(loss) == pytest.approx(ce + 0.5 * (1 - p_true), rel=1e-5)


def test_perfect_logits_give_near_zero_loss_and_gradients_flow() -> None:
    target = torch.randint(0, 3, (2, 8, 8))
    logits = (torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 30).requires_grad_()
    loss = build_loss(TrainSpec(loss="ce_lovasz"), 3)(logits, target)
    assert float(loss.detach()) < 1e-6
    noisy = torch.randn(2, 3, 8, 8, requires_grad=True)
    build_loss(TrainSpec(loss="dice_ce"), 3)(noisy, target).backward()
    assert noisy.grad is not None and float(noisy.grad.abs().sum()) > 0


def test_class_weight_count_must_match() -> None:
    with pytest.raises(ValueError, match="class_weights has 2 values for 3 classes"):
        build_loss(TrainSpec(class_weights=(1.0, 2.0)), 3)


def test_deep_supervision_weights_heads_against_shrunk_labels() -> None:
    """Heads weighted 1 and ½, normalized (÷1.5); the ½-size head is scored against the label map
    sampled at odd pixels (nearest-exact: output i reads input 2i + 1)."""
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 8, 8))
    full, half = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4)
    weights = torch.tensor([1.0, 1.0, 3.0])
    loss = build_loss(TrainSpec(loss="ce", class_weights=(1.0, 1.0, 3.0)), 3, deep_supervision=True)
    expected = (
        torch.nn.functional.cross_entropy(full, target, weight=weights)
        + 0.5 * torch.nn.functional.cross_entropy(half, target[:, 1::2, 1::2], weight=weights)
    ) / 1.5
    assert float(loss([full, half], target)) == pytest.approx(float(expected), rel=1e-6)
    # A single tensor (evaluation output) is scored like the plain loss.
    plain = build_loss(TrainSpec(loss="ce", class_weights=(1.0, 1.0, 3.0)), 3)
    assert float(loss(full, target)) == pytest.approx(float(plain(full, target)), rel=1e-6)
