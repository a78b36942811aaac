"""The peer bench's step budget: ours as a cascade stays within the optimizer steps nnU-Net gets."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "peer_nnunet.py"

# Stands in for ``nephroseg train``: records its arguments in OUT/args.json.
RECORD_ARGS = (
    "import json, pathlib, sys; args = sys.argv[1:]; "
    "out = pathlib.Path(args[args.index('--out') + 1]); out.mkdir(parents=True); "
    "(out / 'args.json').write_text(json.dumps(args))"
)


@pytest.fixture(scope="module")
def peer_nnunet():
    spec = importlib.util.spec_from_file_location("peer_nnunet", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def budget_of(run_dir: Path) -> dict[str, str]:
    """The profile and ``--set`` overrides one training command was given."""
    args = json.loads((run_dir / "args.json").read_text())
    overrides = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--set")
    return {"profile": args[args.index("--profile") + 1], **overrides}


def test_a_cascade_splits_the_steps_and_epochs_between_finder_and_refine_model(peer_nnunet, tmp_path):
    run_dir = tmp_path / "ours_run"
    peer_nnunet.train_ours_cascade(
        [sys.executable, "-c", RECORD_ARGS],
        run_dir,
        1600,
        16,
        profile="demo",
        batch=8,
        overrides=["model.width=0.5"],
        env=None,
        coarse_steps=200,
        coarse_profile="demo_coarse",
    )
    refine, finder = budget_of(run_dir), budget_of(peer_nnunet.finder_of(run_dir))
    assert peer_nnunet.finder_of(run_dir) == tmp_path / "ours_run_coarse"
    assert peer_nnunet.finder_options(run_dir, 200) == ["--coarse-model", str(tmp_path / "ours_run_coarse")]
    assert refine["profile"] == "demo" and finder["profile"] == "demo_coarse"
    refine_steps = int(refine["train.epochs"]) * int(refine["train.iterations_per_epoch"])
    finder_steps = int(finder["train.epochs"]) * int(finder["train.iterations_per_epoch"])
    assert (refine_steps, finder_steps) == (1400, 200)
    assert (refine["train.epochs"], finder["train.epochs"]) == ("14", "2")
    assert refine["train.batch_size"] == finder["train.batch_size"] == "8"
    assert refine["model.width"] == "0.5"


def test_a_single_model_takes_the_whole_budget(peer_nnunet, tmp_path):
    run_dir = tmp_path / "ours_run"
    peer_nnunet.train_ours_cascade(
        [sys.executable, "-c", RECORD_ARGS], run_dir, 250, 10, profile="quick", batch=None,
        overrides=[], env=None,
    )  # fmt: skip
    budget = budget_of(run_dir)
    assert (budget["train.epochs"], budget["train.iterations_per_epoch"]) == ("10", "25")
    assert "train.batch_size" not in budget  # the recipe's own batch
    assert not peer_nnunet.finder_of(run_dir).exists()
    assert peer_nnunet.finder_options(run_dir, 0) == []  # predicted without a finder


def test_reuse_counts_a_trained_model_s_optimization_time_without_training(peer_nnunet, tmp_path):
    run_dir = tmp_path / "ours_run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps({"seconds_per_iteration": 0.5, "steps": 300}))
    stats = peer_nnunet.train_ours_cascade(
        [sys.executable, "-c", "raise SystemExit(1)"], run_dir, 300, 3, profile="demo", batch=8,
        overrides=[], env=None, reuse=True,
    )  # fmt: skip
    assert stats["s"] == pytest.approx(150.0)
    assert not (run_dir / "args.json").exists()


def test_timed_commands_run_in_turn_and_report_their_median(peer_nnunet):
    calls = []
    timings = {"ours": iter([9.0, 7.0, 8.0]), "theirs": iter([30.0, 36.0, 33.0])}

    def job(key: str, rss: float):
        def run() -> dict:
            calls.append(key)
            return {"s": next(timings[key]), "rss_mb": rss + len(calls)}

        return run

    stats = peer_nnunet.timed_in_turn({"ours": job("ours", 100.0), "theirs": job("theirs", 500.0)}, 3)
    assert calls == ["ours", "theirs"] * 3  # alternated, so a slow minute hits both tools
    assert stats["ours"] == {"s": 8.0, "runs_s": [9.0, 7.0, 8.0], "rss_mb": 105.0}
    assert stats["theirs"] == {"s": 33.0, "runs_s": [30.0, 36.0, 33.0], "rss_mb": 506.0}
    assert peer_nnunet.seconds(stats["theirs"]) == (
        "median of 3 runs in turn with the other tools (30.0–36.0 s)"
    )
