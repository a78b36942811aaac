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


def _torchrun(*arguments: str) -> subprocess.CompletedProcess:
    """A `nephroseg` command as two Gloo ranks under torchrun."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "nephroseg.cli", *arguments, "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(command, capture_output=True, text=True, timeout=3 * LIMIT_S, env=env)


def _torchrun_train(data: Path, run: Path, recipe: str = "nnunet3d") -> subprocess.CompletedProcess:
    """`nephroseg train` of a recipe's tiny profile (default: the 3D one) as two ranks."""
    return _torchrun("train", "--data", str(data), "--out", str(run), "--recipe", recipe, "--profile", "tiny")


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("ddp") / "data"
    synthesize_cohort(data, 3, 0, SynthConfig.fast(size=40, slice_thickness_mm=(3.0, 5.0)), progress=False)
    return data


@pytest.mark.slow
def test_two_ranks_train_identical_weights(small_cohort: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    started = time.perf_counter()
    result = _torchrun_train(small_cohort, run)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    digests = summary["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert (run / "checkpoints" / "best.pt").is_file()
    assert elapsed < LIMIT_S, f"took {elapsed:.0f} s"


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["nnunet3d", "resunet25d"])
def test_rank_zero_input_error_stops_every_rank_with_its_message(tmp_path: Path, recipe: str) -> None:
    """A bad case found while rank 0 prepares the cohort stops both ranks with the same one-line error
    (not a connection error from the rank left waiting), and leaves no run folder behind."""
    import nibabel as nib
    import numpy as np

    data = tmp_path / "data"
    synthesize_cohort(data, 3, 0, SynthConfig.fast(size=40, slice_thickness_mm=(3.0, 5.0)), progress=False)
    label_path = data / "case_00001" / "segmentation.nii.gz"
    label = nib.load(label_path)
    values = np.asarray(label.dataobj).copy()
    values[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(values, label.affine, label.header), label_path)
    run = tmp_path / "run"
    result = _torchrun_train(data, run, recipe)
    assert result.returncode != 0
    error_lines = [line for line in result.stderr.splitlines() if "label values outside {0, 1, 2}: 7" in line]
    assert len(error_lines) == 2, result.stderr[-3000:]
    assert sum("(reported by rank 0)" in line for line in error_lines) == 1
    assert "[rank1]" not in result.stderr and "╭" not in result.stderr  # no rank's own traceback
    assert not run.exists()


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["resunet25d", "maskrcnn"])
def test_two_ranks_train_a_slice_model_identically(small_cohort: Path, tmp_path: Path, recipe: str) -> None:
    """The 2.5D trainer under torchrun: DistributedDataParallel replicas (Mask R-CNN through its own
    objective) end bit-identical, BatchNorm running statistics included; rank 0 alone reports."""
    run = tmp_path / "run"
    result = _torchrun_train(small_cohort, run, recipe)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    digests = summary["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert result.stdout.count("best checkpoint") == 1


@pytest.mark.slow
def test_two_ranks_cross_validate_in_one_process_group(small_cohort: Path, tmp_path: Path) -> None:
    """`cv` under torchrun trains every fold with both ranks, and rank 0 alone predicts and scores the
    held-out cases (one prediction per case, one table)."""
    out = tmp_path / "cv"
    result = _torchrun("cv", "--data", str(small_cohort), "--out", str(out), "--recipe", "resunet25d",
                       "--profile", "tiny", "--folds", "3")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (out / "out_of_fold").iterdir()) == [
        f"case_{i:05d}.nii.gz" for i in range(3)
    ]
    for fold in range(3):
        summary = json.loads((out / f"fold_{fold}" / "summary.json").read_text())
        assert summary["world_size"] == 2 and len(set(summary["rank_weight_digests"])) == 1
    assert len((out / "folds.csv").read_text().splitlines()) == 5  # header, 3 folds, pooled
    assert result.stdout.count("pooled: composite_dice=") == 1
