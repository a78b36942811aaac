"""Inference: slice-wise segmentation by one model or an ensemble, written in the source geometry."""

from nephroseg.inference.predict import PredictionJob, load_models, plan_outputs, predict, run_jobs
from nephroseg.inference.segmenter import SegmentationModel, Segmenter

__all__ = [
    "PredictionJob",
    "SegmentationModel",
    "Segmenter",
    "load_models",
    "plan_outputs",
    "predict",
    "run_jobs",
]
