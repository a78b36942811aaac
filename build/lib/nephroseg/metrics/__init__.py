"""Segmentation scores: the KiTS19 challenge metrics and the seeds' own (pixel accuracy, slice mIoU)."""

from nephroseg.metrics.evaluate import Evaluation, evaluate_folders, score_arrays, write_evaluation
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
    "Evaluation",
    "KitsScores",
    "case_metrics",
    "dice",
    "evaluate_folders",
    "iou",
    "kits_scores",
    "per_class_scores",
    "pixel_accuracy",
    "score_arrays",
    "slice_mean_iou",
    "write_evaluation",
]
