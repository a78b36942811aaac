"""A training run killed with SIGKILL resumes at its last checkpoint and ends where an
uninterrupted run with the same seed ends: same step count, same weights, bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from nephroseg.recipe import load_recipe
from nephroseg.training import train
from nephroseg.training.checkpoint import load_checkpoint

OVERRIDES = ["train.epochs=3", "train.iterations_per_epoch=40", "train.lr_schedule=cosine"]
CLI_OVERRIDES = [arg for item in OVERRIDES for arg in ("--set", item)]


def _start_training(data: Path, run: Path) -> subprocess.Popen:
    args = ["train", "--data", str(data), "--out", str(run), "--recipe", "resunet25d", "--profile", "tiny"]
    args += [*CLI_OVERRIDES, "--seed", "3", "--no-progress"]
    code = f"from nephroseg.cli import main; main({args!r})"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)


def _kill_after_first_checkpoint(process: subprocess.Popen, last: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not last.exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_sigkilled_run_resumes_to_identical_weights(kits_dir: Path, tmp_path: Path) -> None:
    recipe = load_recipe("resunet25d", profile="tiny", overrides=OVERRIDES)
    reference = train(kits_dir, recipe, tmp_path / "reference", seed=3, progress=False, tensorboard=False)

    killed = tmp_path / "killed"
    last = killed / "checkpoints" / "last.pt"
    process = _start_training(kits_dir, killed)
    _kill_after_first_checkpoint(process, last)
    assert process.returncode == -signal.SIGKILL
    interrupted_at = load_checkpoint(last)["epoch"]
    assert 1 <= interrupted_at < 3, "the run must have been killed mid-way"

    resumed = train(kits_dir, recipe, killed, seed=3, resume=True, progress=False, tensorboard=False)
    assert resumed.steps == reference.steps == 3 * 40
    expected = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")
    actual = load_checkpoint(last)
    for name, tensor in expected["model_state"].items():
        assert torch.equal(tensor, actual["model_state"][name]), name
    assert actual["step"] == expected["step"]
    # The choice of best checkpoint resumes with its moving average.
    for key in ("best_epoch", "best_score", "smoothed_score", "best_smoothed"):
        assert actual[key] == expected[key], key
