"""Overlap scores on label maps (numpy only).

Empty-mask convention (the KiTS19 challenge leaves it open; we fix it and test it): when neither the
prediction nor the ground truth contains the structure, its Dice and IoU are 1.0 (nothing to find,
nothing found); when exactly one is empty they are 0.0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

CLASS_NAMES = ("background", "kidney", "tumor")


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks, 1.0 when both are empty."""
    prediction = np.asarray(prediction, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    total = int(prediction.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(prediction, truth).sum()) / total


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks, 1.0 when both are empty."""
    prediction = np.asarray(prediction, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    union = int(np.logical_or(prediction, truth).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(prediction, truth).sum()) / union


@dataclass(frozen=True)
class KitsScores:
    """The KiTS19 challenge metrics of one case."""

    kidney_tumor_dice: float  # label > 0: kidney and tumor together
    tumor_dice: float  # label > 1
    composite_dice: float  # their mean, the challenge ranking score

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def kits_scores(prediction: np.ndarray, truth: np.ndarray) -> KitsScores:
    _check_same_shape(prediction, truth)
    kidney_tumor = dice(prediction > 0, truth > 0)
    tumor = dice(prediction > 1, truth > 1)
    return KitsScores(kidney_tumor, tumor, (kidney_tumor + tumor) / 2.0)


def per_class_scores(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice and IoU of each class on its own (``kidney`` is label 1 only, not kidney+tumor)."""
    _check_same_shape(prediction, truth)
    scores: dict[str, float] = {}
    for value, name in enumerate(CLASS_NAMES):
        scores[f"{name}_dice"] = dice(prediction == value, truth == value)
        scores[f"{name}_iou"] = iou(prediction == value, truth == value)
    return scores


def pixel_accuracy(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of voxels with the right label (seed 002's metric; dominated by background)."""
    _check_same_shape(prediction, truth)
    return float(np.mean(np.asarray(prediction) == np.asarray(truth)))


def slice_mean_iou(prediction: np.ndarray, truth: np.ndarray, *, skip_empty: bool) -> float:
    """Seed 003's score: per axial slice the mean IoU over the classes present in prediction or truth
    (a class absent from both is left out, as Keras' MeanIoU does), then the mean over slices.

    ``skip_empty=True`` leaves out slices whose ground truth is all background: on a whole CT those
    are most slices, and they score 1.0 whenever the model predicts nothing there.
    """
    _check_same_shape(prediction, truth)
    values = []
    for pred_slice, true_slice in zip(prediction, truth, strict=True):
        if skip_empty and not np.any(true_slice):
            continue
        per_class = []
        for value in range(len(CLASS_NAMES)):
            p, t = pred_slice == value, true_slice == value
            union = int(np.logical_or(p, t).sum())
            if union:
                per_class.append(int(np.logical_and(p, t).sum()) / union)
        values.append(float(np.mean(per_class)))
    return float(np.mean(values)) if values else float("nan")


def case_metrics(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Every score we report for one case, as a flat dict (the rows of metrics.csv)."""
    metrics = kits_scores(prediction, truth).as_dict()
    metrics.update(per_class_scores(prediction, truth))
    metrics["pixel_accuracy"] = pixel_accuracy(prediction, truth)
    metrics["slice_mean_iou"] = slice_mean_iou(prediction, truth, skip_empty=False)
    metrics["slice_mean_iou_nonempty"] = slice_mean_iou(prediction, truth, skip_empty=True)
    return metrics


def _check_same_shape(prediction: np.ndarray, truth: np.ndarray) -> None:
    if np.shape(prediction) != np.shape(truth):
        raise ValueError(
            f"prediction shape {np.shape(prediction)} differs from truth shape {np.shape(truth)}"
        )
