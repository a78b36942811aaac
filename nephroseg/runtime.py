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


PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX). Without it, oneDNN emulates
    bfloat16 about 20× slower than float32 (docs/benchmarks.md, "CPU speed-ups")."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' is bfloat16 autocast on a CPU that computes it natively (the networks ran 2.2–3.5× faster,
    the labels of 24 held-out cases differed in 0.09 % of their foreground voxels), float32 elsewhere."""
    if precision not in PRECISIONS:
        raise NephrosegInputError("--precision", f"unknown precision '{precision}' (auto, fp32 or bf16)")
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cpu" and native_bf16() else "fp32"
