"""Segmentation scores: the KiTS19 challenge metrics and the seeds' own (pixel accuracy, slice mIoU)."""

from nephroseg.metrics.overlap import (
    CLASS_NAMES,
    KitsScores,
    case_metrics,
    dice,
    iou,
    kits_scores,
    per_class_scores,
    pixel_accuracy,
    slice_mean_iou,
)

__all__ = [
    "CLASS_NAMES",
    "KitsScores",
    "case_metrics",
    "dice",
    "iou",
    "kits_scores",
    "per_class_scores",
    "pixel_accuracy",
    "slice_mean_iou",
]
