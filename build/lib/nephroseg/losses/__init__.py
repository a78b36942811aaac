"""Segmentation losses built from maintained implementations (torch CE, smp's Lovász, MONAI's Dice)."""

from nephroseg.losses.segmentation import NormalizedDeepSupervisionLoss, SegmentationLoss, build_loss

__all__ = ["NormalizedDeepSupervisionLoss", "SegmentationLoss", "build_loss"]
