"""Multi-process training: two ranks under torchrun (Gloo on the CPU) end with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nephroseg.synth import SynthConfig, synthesize_cohort

LIMIT_S = 60


@pytest.mark.slow
def test_two_ranks_train_identical_weights(tmp_path: Path) -> None:
    data = tmp_path / "data"
    synthesize_cohort(data, 3, 0, SynthConfig.fast(size=40, slice_thickness_mm=(3.0, 5.0)), progress=False)
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "nephroseg.cli", "train", "--data", str(data), "--out", str(run),
        "--recipe", "nnunet3d", "--profile", "tiny", "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=3 * LIMIT_S, env=env)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    digests = summary["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert (run / "checkpoints" / "best.pt").is_file()
    assert elapsed < LIMIT_S, f"took {elapsed:.0f} s"
