"""Device choice shared by training and inference."""

from __future__ import annotations

import torch

from nephroseg.errors import NephrosegInputError


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without a GPU is a user error, not a crash."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise NephrosegInputError("--device", "CUDA was asked for but no GPU is available")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise NephrosegInputError("--device", str(err)) from err
