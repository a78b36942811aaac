"""Training: the loop, checkpoints and logs."""

from typing import Any

from nephroseg.training.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint

__all__ = ["TrainResult", "load_checkpoint", "resolve_checkpoint", "save_checkpoint", "train"]


def __getattr__(name: str) -> Any:
    """The loop is imported on first use: it brings the losses and, through them, timm (0.4 s), which
    prediction, reading only checkpoints, does not need."""
    if name in ("TrainResult", "train"):
        from nephroseg.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
