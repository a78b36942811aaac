"""Training: the loop, checkpoints and logs."""

from nephroseg.training.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from nephroseg.training.trainer import TrainResult, train

__all__ = ["TrainResult", "load_checkpoint", "resolve_checkpoint", "save_checkpoint", "train"]
