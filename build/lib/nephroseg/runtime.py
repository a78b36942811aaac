"""Device and CPU choices shared by training, inference and the demo."""

from __future__ import annotations

import os

import torch

from nephroseg.errors import NephrosegInputError


def usable_cpu_count() -> int:
    """CPUs this process may run on: the affinity mask where the OS has one (Linux: a container's
    or taskset's limit), else every CPU (macOS and Windows have no ``sched_getaffinity``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# oneDNN instruction-set caps (ONEDNN_MAX_CPU_ISA) under which it emulates bfloat16 even on a CPU
# that has it: the demo's six cases took 177 s to predict under AVX2 on a bf16 CPU, 27 s in float32.
ISA_CAPS_WITHOUT_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"})


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX) and oneDNN may use it. Without
    it, oneDNN emulates bfloat16 about 20× slower than float32 (docs/benchmarks.md, "CPU speed-ups")."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    if cap.strip().upper() in ISA_CAPS_WITHOUT_BF16:
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' is bfloat16 autocast on a CPU that computes it natively (the networks ran 2.2–3.5× faster,
    the labels of 24 held-out cases differed in 0.09 % of their foreground voxels), float16 autocast on
    CUDA (nnU-Net's choice for prediction; not measured here, no GPU was lent), float32 elsewhere."""
    if precision not in PRECISIONS:
        raise NephrosegInputError("--precision", f"unknown precision '{precision}' ({', '.join(PRECISIONS)})")
    if precision == "fp16" and device.type != "cuda":
        raise NephrosegInputError("--precision", "fp16 needs a CUDA device; a CPU autocasts to bf16")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    return "bf16" if native_bf16() else "fp32"


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The context the networks' forward passes run in for a resolved precision; weights stay float32,
    and 'fp32' is no autocast at all."""
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)
