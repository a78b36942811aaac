"""The main job's flow (synth → train → predict → evaluate → report) through the CLI, on a tiny
cohort with the tests' profile: every stage runs and the last line is the held-out score."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import run_cli

from nephroseg.inference.resume import RECORD_NAME


def test_demo_flow_end_to_end(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    # The tests' cascade: a coarse model finds the kidneys, the demo model segments a box around each.
    args = ["demo", "--out", str(out), "--profile", "tiny_cascade", "--train-cases", "3", "--test-cases", "2"]
    code, stdout, stderr = run_cli([*args, "--size", "48", "--no-progress"], capsys)
    assert code == 0, stderr
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("composite_dice=")
    metrics = json.loads((out / "metrics.json").read_text())
    assert abs(float(last.split("=")[1]) - metrics["mean"]["composite_dice"]) < 1e-4
    assert sorted(p.name for p in (out / "predictions").iterdir()) == [
        RECORD_NAME,  # what made the labels, for predict --resume
        "case_00003.nii.gz",
        "case_00004.nii.gz",
    ]
    assert (out / "report.md").is_file() and (out / "figures" / "curves.png").is_file()
    assert sorted(p.name for p in (out / "viewer").iterdir()) == ["case_00003.html", "case_00004.html"]
    assert f"viewer: {out / 'viewer'}" in stdout
    assert (out / "run" / "checkpoints" / "best.pt").is_file()
    assert (out / "run_coarse" / "checkpoints" / "best.pt").is_file()
    assert f"| coarse stage (finds the kidneys) | {out / 'run_coarse'} |" in (out / "report.md").read_text()

    # Re-running resumes: finished stages are reused, the score is the same.
    code, stdout_again, _ = run_cli([*args, "--size", "48", "--no-progress"], capsys)
    assert code == 0 and stdout_again.strip().splitlines()[-1] == last

    # Other settings into the same folder are refused: the finished run would be reused silently.
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    other = [*args[:5], "--train-cases", "4", "--test-cases", "2", "--size", "48", "--no-progress"]
    code, _, stderr = run_cli(other, capsys)
    assert code == 2 and "other settings (train_cases)" in stderr
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before

    # So is a folder whose run an older recipe trained (the record holds the resolved recipe).
    record = out / "demo_settings.json"
    made_by = json.loads(record.read_text())
    made_by["recipe"]["augment"]["rotate_deg"] += 1.0
    record.write_text(json.dumps(made_by))
    code, _, stderr = run_cli([*args, "--size", "48", "--no-progress"], capsys)
    assert code == 2 and "other settings (recipe)" in stderr
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before


def test_demo_refuses_a_folder_of_other_files(tmp_path: Path, capsys) -> None:
    """The demo writes report.md, metrics.csv, figures/, data/ …: a folder already holding files of
    the user's (``--out ~/Documents``) is refused before anything is written."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("the user's report\n")
    (out / "notes.txt").write_text("notes\n")
    args = ["demo", "--out", str(out), "--profile", "tiny_cascade", "--train-cases", "3", "--test-cases", "2"]
    code, _, stderr = run_cli([*args, "--size", "48", "--no-progress"], capsys)
    assert code == 2 and "holds other files (notes.txt, report.md)" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "report.md"]
    assert (out / "report.md").read_text() == "the user's report\n"
