"""``--precision auto``: bfloat16 autocast where the CPU computes it natively, float16 on CUDA, float32
elsewhere; the choice made is what a prediction folder records, and both the slice stacks and the 3D
sliding windows run in it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from nephroseg import runtime
from nephroseg.errors import NephrosegInputError
from nephroseg.inference.resume import RECORD_NAME
from nephroseg.inference.segmenter import SegmentationModel
from nephroseg.inference.sliding import VolumetricSegmenter
from nephroseg.runtime import resolve_precision
from tests.test_volumetric import _tiny_model


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_precision_follows_the_cpu(monkeypatch, native: bool, expected: str) -> None:
    monkeypatch.setattr(runtime, "native_bf16", lambda: native)
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"  # nnU-Net's choice on a GPU
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"  # explicit choices stay
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"


@pytest.mark.parametrize(
    ("cap", "expected"), [("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True), ("", True)]
)
def test_a_onednn_isa_cap_below_bf16_means_emulated(monkeypatch, cap: str, expected: bool) -> None:
    """On a bf16 CPU whose oneDNN is capped under AVX512-BF16, bfloat16 would be emulated: not native."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert runtime.native_bf16() is expected


def test_unknown_precision_is_a_user_error() -> None:
    with pytest.raises(NephrosegInputError, match=r"--precision.*unknown precision 'fp8'"):
        resolve_precision("fp8", torch.device("cpu"))


def test_float16_on_a_cpu_is_a_user_error() -> None:
    with pytest.raises(NephrosegInputError, match=r"--precision.*fp16 needs a CUDA device"):
        resolve_precision("fp16", torch.device("cpu"))


@pytest.mark.parametrize(
    ("precision", "enabled", "dtype"),
    [("fp32", False, None), ("bf16", True, torch.bfloat16), ("fp16", True, torch.float16)],
)
def test_autocast_context_of_each_precision(precision: str, enabled: bool, dtype) -> None:
    context = runtime.autocast(torch.device("cpu"), precision)
    assert context._enabled is enabled
    if dtype is not None:
        assert context.fast_dtype == dtype


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_prediction_folder_records_the_precision_auto_chose(
    trained_run, tmp_path: Path, monkeypatch, native: bool, expected: str
) -> None:
    from nephroseg.inference import predict

    data, run = trained_run
    monkeypatch.setattr(runtime, "native_bf16", lambda: native)
    out = tmp_path / "out"
    predict(data, out, [run], progress=False)
    record = json.loads((out / RECORD_NAME).read_text())
    made_with = {record["settings"][key]["precision"] for key in record["labels"].values()}
    assert made_with == {expected}


class _AutocastProbe(torch.nn.Module):
    """A 3D 'network' that records whether it ran under CPU bfloat16 autocast; its logits favour
    class 1 everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 3, 1)
        torch.nn.init.zeros_(self.conv.weight)
        with torch.no_grad():
            self.conv.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
        self.dtypes: set[torch.dtype] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        self.dtypes.add(out.dtype)
        return out


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_sliding_windows_run_in_the_precision_asked(precision: str, dtype: torch.dtype) -> None:
    tiny = _tiny_model()
    probe = _AutocastProbe().eval()
    model = SegmentationModel(probe, tiny.recipe)
    segmenter = VolumetricSegmenter([model], precision=precision, postprocess=False)
    hu = np.full((12, 20, 20), 40.0, np.float32)
    labels = segmenter.segment(hu, (2.0, 2.0, 2.0))
    assert probe.dtypes == {dtype}
    assert labels.shape == hu.shape and (labels == 1).all()


def test_3d_training_and_its_validation_use_mixed_precision_on_cuda_only() -> None:
    from nephroseg.training.volumetric import training_precision

    assert training_precision(torch.device("cuda")) == "fp16"
    assert training_precision(torch.device("cpu")) == "fp32"
    assert runtime.autocast(torch.device("cpu"), training_precision(torch.device("cpu")))._enabled is False


def test_usable_cpu_count_without_affinity_falls_back_to_every_cpu(monkeypatch) -> None:
    """macOS and Windows have no os.sched_getaffinity: the demo's synthesis must still start."""
    from nephroseg.runtime import usable_cpu_count

    if hasattr(os, "sched_getaffinity"):
        assert usable_cpu_count() == len(os.sched_getaffinity(0))
        monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert usable_cpu_count() == 7
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # "cannot be determined"
    assert usable_cpu_count() == 1
