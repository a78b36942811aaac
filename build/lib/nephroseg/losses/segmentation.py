"""Weighted cross-entropy, optionally plus Lovász-Softmax (seed 004) or soft Dice (nnU-Net).

The Lovász-Softmax term is segmentation-models-pytorch's implementation of Berman et al. 2018;
the Dice term is MONAI's. Weights on the classes let the rare tumor class count (the brief: accuracy
is won or lost on the tumor). Deep supervision (3D) is MONAI's wrapper with nnU-Net's normalized
weights.
"""

from __future__ import annotations

import torch
from monai.losses import DeepSupervisionLoss, DiceLoss
from segmentation_models_pytorch.losses import LovaszLoss
from torch import Tensor, nn

from nephroseg.recipe import TrainSpec


class SegmentationLoss(nn.Module):
    """``CE(class weights) + region_weight · region loss`` on logits (N, C, H, W) and labels (N, H, W)."""

    def __init__(
        self, class_weights: list[float] | tuple[float, ...], region: str | None, region_weight: float
    ) -> None:
        super().__init__()
        self.register_buffer("class_weights", torch.tensor(class_weights, dtype=torch.float32))
        self.region_weight = region_weight
        if region == "lovasz":
            self.region: nn.Module | None = LovaszLoss(mode="multiclass", per_image=False, from_logits=True)
        elif region == "dice":
            self.region = DiceLoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
        else:
            self.region = None
        self.region_name = region

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = logits.float()  # Lovász sorts and takes dot products: float32 under autocast too
        target = target.long()
        loss = nn.functional.cross_entropy(logits, target, weight=self.class_weights.to(logits.dtype))
        if self.region is not None and self.region_weight:
            region_target = target[:, None] if self.region_name == "dice" else target
            loss = loss + self.region_weight * self.region(logits, region_target)
        return loss


def build_loss(spec: TrainSpec, num_classes: int, deep_supervision: bool = False) -> nn.Module:
    """The recipe's loss; for a deeply supervised model, applied to every head against the labels
    shrunk to its size (nearest), weighted 1, ½, ¼, … normalized."""
    weights = list(spec.class_weights)
    if len(weights) != num_classes:
        raise ValueError(f"train.class_weights has {len(weights)} values for {num_classes} classes")
    region = {"ce": None, "ce_lovasz": "lovasz", "dice_ce": "dice"}[spec.loss]
    loss = SegmentationLoss(weights, region, spec.lovasz_weight if region == "lovasz" else 1.0)
    return _LabelMapDeepSupervision(loss) if deep_supervision else loss


class NormalizedDeepSupervisionLoss(DeepSupervisionLoss):
    """MONAI's deep supervision with its weights 1, 1/2, 1/4, … divided by their sum, as nnU-Net does:
    unnormalized, four heads scale the loss, and with it SGD's effective learning rate, by 1.875."""

    def get_weights(self, levels: int = 1) -> list[float]:
        weights = super().get_weights(levels)
        total = sum(weights)
        return [w / total for w in weights]


class _LabelMapDeepSupervision(NormalizedDeepSupervisionLoss):
    """Deep supervision for label maps (N, H, W), which MONAI's shrinking (channel-first) does not
    take: each is shrunk here, with MONAI's interpolation mode, and passed on as a label map."""

    def get_loss(self, input: Tensor, target: Tensor) -> Tensor:
        if input.shape[2:] != target.shape[1:]:
            shrunk = nn.functional.interpolate(
                target[:, None].float(), input.shape[2:], mode=self.interp_mode
            )
            target = shrunk[:, 0].long()
        return self.loss(input, target)
