"""The command line: end to end on a tiny cohort, and bad input → one line, exit 2, no output."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import blob_case, files_under, kits_affine, save_nifti

from nephroseg.cli import main
from nephroseg.inference.resume import RECORD_NAME

TINY = ["--recipe", "resunet25d", "--profile", "tiny", "--device", "cpu", "--no-progress"]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# trained_run: the session fixture in conftest.py (a tiny cohort and a two-step run on it).


def test_train_writes_a_complete_run(trained_run) -> None:
    _, run = trained_run
    for name in (
        "recipe.yaml",
        "split.json",
        "log.csv",
        "summary.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["model"] == "resunet25d"
    assert summary["prepare_seconds"] > 0  # three cases read, resampled and cached
    assert summary["prepare_seconds_per_case"] == pytest.approx(summary["prepare_seconds"] / 3, abs=1e-3)
    split = json.loads((run / "split.json").read_text())
    assert len(split["val"]) == 1 and not set(split["train"]) & set(split["val"])
    # TensorBoard holds the log's curves: the same values at the same step
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves = EventAccumulator(str(run / "tensorboard")).Reload()
    (row,) = csv.DictReader((run / "log.csv").open())
    assert {"train/loss", "val/composite_dice", "lr"} <= set(curves.Tags()["scalars"])
    for tag, column in (("train/loss", "train_loss"), ("val/composite_dice", "val_composite_dice")):
        (event,) = curves.Scalars(tag)
        assert event.step == int(row["step"]) == 2
        assert event.value == pytest.approx(float(row[column]), rel=1e-6)


def test_predict_evaluate_report_end_to_end(trained_run, tmp_path: Path, capsys) -> None:
    data, run = trained_run
    out = tmp_path / "pred"
    code, stdout, _ = run_cli(
        ["predict", "-i", str(data), "-o", str(out), "-m", str(run), "--no-progress"], capsys
    )
    assert code == 0 and "wrote 3 segmentation(s)" in stdout
    for case in ("case_00000", "case_00001", "case_00002"):
        written = nib.load(out / f"{case}.nii.gz")
        source = nib.load(data / case / "imaging.nii.gz")
        assert written.shape == source.shape and written.get_data_dtype() == np.uint8
        np.testing.assert_allclose(written.affine, source.affine)
    code, stdout, _ = run_cli(["evaluate", "--pred", str(out), "--gt", str(data)], capsys)
    assert code == 0 and "composite_dice=" in stdout
    assert (out / "metrics.csv").read_text().splitlines()[-1].startswith("mean,")
    code, stdout, _ = run_cli(
        [
            "report",
            "--pred",
            str(out),
            "--images",
            str(data),
            "--gt",
            str(data),
            "--run",
            str(run),
            "--out",
            str(tmp_path / "report"),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "case_00001" in report and "figures/curves.png" in report
    assert (tmp_path / "report" / "figures" / "case_00002.png").stat().st_size > 1000


def test_predict_single_file_to_named_output(trained_run, tmp_path: Path, capsys) -> None:
    data, run = trained_run
    target = tmp_path / "one.nii.gz"
    source = data / "case_00001" / "imaging.nii.gz"
    code, _, _ = run_cli(
        ["predict", "-i", str(source), "-o", str(target), "-m", str(run), "--no-progress"], capsys
    )
    assert code == 0 and files_under(tmp_path) == ["one.nii.gz"]
    # a KiTS case folder to a named file: its imaging is the input (the folder was taken for DICOM)
    code, _, err = run_cli(
        [
            "predict",
            "-i",
            str(source.parent),
            "-o",
            str(tmp_path / "two.nii.gz"),
            "-m",
            str(run),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    one, two = (np.asarray(nib.load(tmp_path / name).dataobj) for name in ("one.nii.gz", "two.nii.gz"))
    assert np.array_equal(one, two)


@pytest.mark.parametrize("slices", [1, 2])
def test_predict_a_volume_of_one_or_two_slices(trained_run, tmp_path: Path, capsys, slices: int) -> None:
    """A one-slice volume stored in RAS (x and y flipped into the canonical orientation) predicts onto
    its own grid; its length-1 slice axis came out with a negative stride, which torch refused."""
    _, run = trained_run
    image, _ = blob_case()
    ras = np.diag([-1.5, -1.5, 3.0, 1.0])
    source = save_nifti(tmp_path / "thin.nii.gz", image[:slices].transpose(2, 1, 0), ras, np.int16)
    target = tmp_path / "thin_labels.nii.gz"
    code, _, err = run_cli(
        ["predict", "-i", str(source), "-o", str(target), "-m", str(run), "--no-progress"], capsys
    )
    assert code == 0, err
    written = nib.load(target)
    assert written.shape == (48, 40, slices) and np.array_equal(written.affine, ras)


def test_ensemble_of_a_checkpoint_file_and_a_run(trained_run, tmp_path: Path, capsys) -> None:
    data, run = trained_run
    args = ["predict", "-i", str(data), "-o", str(tmp_path / "e"), "--no-progress"]
    code, _, _ = run_cli([*args, "-m", str(run), "-m", str(run / "checkpoints" / "last.pt")], capsys)
    assert code == 0 and len(list((tmp_path / "e").glob("*.nii.gz"))) == 3


# ---- bad input: one line on stderr naming the file, exit 2, nothing written ------------------------


def _assert_user_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_predict_missing_input(trained_run, tmp_path: Path, capsys) -> None:
    _, run = trained_run
    missing = tmp_path / "absent.nii.gz"
    code, _, err = run_cli(["predict", "-i", str(missing), "-o", str(tmp_path / "o"), "-m", str(run)], capsys)
    _assert_user_error(code, err, str(missing), "not found")
    assert not (tmp_path / "o").exists()


def test_predict_several_inputs_to_a_file_name(trained_run, tmp_path: Path, capsys) -> None:
    """Three cases and ``-o labels.nii.gz``: a slip, not a folder to make with that name."""
    data, run = trained_run
    target = tmp_path / "labels.nii.gz"
    code, _, err = run_cli(["predict", "-i", str(data), "-o", str(target), "-m", str(run)], capsys)
    _assert_user_error(
        code,
        err,
        str(target),
        "3 inputs (case_00000, case_00001, case_00002) need an output folder, not a file name",
    )
    assert files_under(tmp_path) == []


@pytest.mark.parametrize(
    "problem,fragment",
    [("truncated", "truncated or corrupt"), ("4d", "expected a 3D volume"), ("nan", "NaN")],
)
def test_predict_bad_volume_writes_nothing(trained_run, tmp_path: Path, capsys, problem, fragment) -> None:
    _, run = trained_run
    path = tmp_path / "in" / "bad.nii.gz"
    if problem == "truncated":
        save_nifti(
            path, np.random.default_rng(0).normal(size=(16, 64, 64)), kits_affine((3, 1, 1)), np.float32
        )
        path.write_bytes(path.read_bytes()[:3000])
    elif problem == "4d":
        save_nifti(path, np.zeros((4, 8, 8, 2), np.int16), kits_affine((3, 1, 1)))
    else:
        data = np.zeros((4, 8, 8), np.float32)
        data[1, 2, 3] = np.nan
        save_nifti(path, data, kits_affine((3, 1, 1)))
    out = tmp_path / "out"
    code, _, err = run_cli(
        ["predict", "-i", str(path), "-o", str(out), "-m", str(run), "--no-progress"], capsys
    )
    _assert_user_error(code, err, str(path), fragment)
    assert not out.exists() or files_under(out) == []


def test_predict_refuses_to_overwrite(trained_run, tmp_path: Path, capsys) -> None:
    data, run = trained_run
    out = tmp_path / "out"
    out.mkdir()
    (out / "case_00000.nii.gz").write_bytes(b"user's earlier result")
    code, _, err = run_cli(["predict", "-i", str(data), "-o", str(out), "-m", str(run)], capsys)
    _assert_user_error(code, err, "case_00000.nii.gz", "--overwrite")
    assert (out / "case_00000.nii.gz").read_bytes() == b"user's earlier result"
    assert files_under(out) == ["case_00000.nii.gz"]


def test_predict_resume_keeps_done_cases_and_predicts_the_rest(trained_run, tmp_path: Path, capsys) -> None:
    data, run = trained_run
    out = tmp_path / "out"
    args = ["predict", "-i", str(data), "-o", str(out), "-m", str(run), "--no-progress"]
    assert run_cli(args, capsys)[0] == 0
    assert files_under(out) == [RECORD_NAME, "case_00000.nii.gz", "case_00001.nii.gz", "case_00002.nii.gz"]
    complete = (out / "case_00002.nii.gz").read_bytes()
    (out / "case_00002.nii.gz").unlink()  # as if the run had stopped before its last case
    (out / "case_00000.nii.gz").write_bytes(b"kept as it is")  # a done case is not predicted again
    code, stdout, _ = run_cli([*args, "--resume"], capsys)
    assert code == 0 and "wrote 1 segmentation(s)" in stdout
    assert (out / "case_00002.nii.gz").read_bytes() == complete
    assert (out / "case_00000.nii.gz").read_bytes() == b"kept as it is"
    code, stdout, _ = run_cli([*args, "--resume"], capsys)  # nothing left to do
    assert code == 0 and "wrote 0 segmentation(s)" in stdout


def test_predict_resume_refuses_other_models_or_settings(trained_run, tmp_path: Path, capsys) -> None:
    data, run = trained_run
    out = tmp_path / "out"
    args = ["predict", "-i", str(data), "-o", str(out), "--no-progress", "--resume"]
    assert run_cli([*args, "-m", str(run)], capsys)[0] == 0
    (out / "case_00001.nii.gz").unlink()
    before = files_under(out)
    code, _, err = run_cli([*args, "-m", str(run), "-m", str(run)], capsys)  # an ensemble is another model
    _assert_user_error(code, err, str(out), "other models")
    code, _, err = run_cli([*args, "-m", str(run), "--tta"], capsys)
    _assert_user_error(code, err, str(out), "other tta")
    code, _, err = run_cli([*args, "-m", str(run), "--overwrite"], capsys)
    _assert_user_error(code, err, "--resume", "choose one")
    (out / RECORD_NAME).write_text("{")
    code, _, err = run_cli([*args, "-m", str(run)], capsys)
    _assert_user_error(code, err, str(out / RECORD_NAME), "unreadable settings record")
    (out / RECORD_NAME).unlink()
    code, _, err = run_cli([*args, "-m", str(run)], capsys)
    _assert_user_error(code, err, str(out), "no record")
    assert files_under(out) == sorted(set(before) - {RECORD_NAME})


def test_predict_resume_checks_each_label_against_the_settings_that_made_it(
    trained_run, tmp_path: Path, capsys
) -> None:
    """Cases predicted into one folder by two commands with other settings: each file keeps its own
    record, so a resume with either settings refuses the other's file instead of trusting it."""
    data, run = trained_run
    out = tmp_path / "out"
    plain = ["predict", "-o", str(out), "-m", str(run), "--no-progress"]
    assert run_cli([*plain, "-i", str(data / "case_00000")], capsys)[0] == 0
    assert run_cli([*plain, "-i", str(data / "case_00001"), "--tta"], capsys)[0] == 0
    record = json.loads((out / RECORD_NAME).read_text())
    assert len(record["settings"]) == 2
    assert record["labels"]["case_00000.nii.gz"] != record["labels"]["case_00001.nii.gz"]
    before = {name: (out / name).read_bytes() for name in files_under(out) if name != RECORD_NAME}
    resume = [*plain, "-i", str(data), "--resume"]
    code, _, err = run_cli(resume, capsys)
    _assert_user_error(code, err, str(out / "case_00001.nii.gz"), "other tta")
    code, _, err = run_cli([*resume, "--tta"], capsys)
    _assert_user_error(code, err, str(out / "case_00000.nii.gz"), "other tta")
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not (out / "case_00002.nii.gz").exists()
    (out / "case_00001.nii.gz").unlink()  # the one made with other settings goes: the resume may go on
    code, stdout, _ = run_cli(resume, capsys)
    assert code == 0 and "wrote 2 segmentation(s)" in stdout
    record = json.loads((out / RECORD_NAME).read_text())
    assert len(set(record["labels"].values())) == 1 and len(record["settings"]) == 1


def test_predict_resume_reads_a_record_of_one_set_of_settings(trained_run, tmp_path: Path, capsys) -> None:
    """A folder recorded by an earlier version (one set of settings for all its files) still resumes."""
    data, run = trained_run
    out = tmp_path / "out"
    args = ["predict", "-i", str(data), "-o", str(out), "-m", str(run), "--no-progress"]
    assert run_cli(args, capsys)[0] == 0
    record = json.loads((out / RECORD_NAME).read_text())
    (out / RECORD_NAME).write_text(json.dumps(next(iter(record["settings"].values()))))
    (out / "case_00002.nii.gz").unlink()
    code, stdout, _ = run_cli([*args, "--resume"], capsys)
    assert code == 0 and "wrote 1 segmentation(s)" in stdout
    assert json.loads((out / RECORD_NAME).read_text())["labels"] == record["labels"]


def test_predict_refuses_checkpoint_with_pickled_code(tmp_path: Path, capsys) -> None:
    import os

    path = tmp_path / "evil.pt"
    # A reference to a callable: unpickling it with full pickle would hand the file control.
    torch.save({"format": "nephroseg.checkpoint.v1", "hook": os.system}, path)
    save_nifti(tmp_path / "ct.nii.gz", np.zeros((2, 8, 8), np.int16), kits_affine((3, 1, 1)))
    code, _, err = run_cli(
        ["predict", "-i", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "o"), "-m", str(path)], capsys
    )
    _assert_user_error(code, err, str(path), "refused")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("problem", ["label_values", "shape", "affine"])
def test_train_bad_cases_leave_no_run(tmp_path: Path, capsys, problem: str) -> None:
    data = tmp_path / "kits"
    for i in range(3):
        image, label = blob_case(seed=i)
        affine = kits_affine((3.0, 1.5, 1.5))
        if i == 2 and problem == "label_values":
            label[0, 0, 0] = 5
        if i == 2 and problem == "shape":
            label = label[:, :, :-1]
        if i == 2 and problem == "affine":
            affine = kits_affine((3.0, 1.5, 1.25))
        save_nifti(data / f"case_{i:05d}" / "imaging.nii.gz", image, kits_affine((3.0, 1.5, 1.5)), np.int16)
        save_nifti(data / f"case_{i:05d}" / "segmentation.nii.gz", label, affine, np.uint8)
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--data", str(data), "--out", str(run), *TINY], capsys)
    _assert_user_error(code, err, "case_00002", "segmentation.nii.gz")
    assert not run.exists()


def test_train_refuses_existing_run_without_resume(trained_run, tmp_path: Path, capsys) -> None:
    data, run = trained_run
    before = (run / "checkpoints" / "last.pt").read_bytes()
    code, _, err = run_cli(["train", "--data", str(data), "--out", str(run), *TINY], capsys)
    _assert_user_error(code, err, str(run), "--resume")
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_train_resume_refuses_another_recipe(trained_run, tmp_path: Path, capsys) -> None:
    """A resume under changed settings used to train on with them (or keep the optimizer's old
    learning rate) while recipe.yaml recorded them for the whole run; another network crashed with
    a traceback after rewriting recipe.yaml. Both are refused, the run untouched; more epochs resume."""
    import shutil

    data, shared_run = trained_run
    run = tmp_path / "run"
    shutil.copytree(shared_run, run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    resume = ["train", "--data", str(data), "--out", str(run), "--resume", "--device", "cpu", "--no-progress"]
    resume += ["--set", "train.iterations_per_epoch=2"]
    tiny = ["--recipe", "resunet25d", "--profile", "tiny"]
    code, _, err = run_cli([*resume, *tiny, "--set", "train.lr=0.01"], capsys)
    _assert_user_error(code, err, str(run / "recipe.yaml"), "another recipe (train.lr 0.001 → 0.01)")
    code, _, err = run_cli([*resume, "--recipe", "unet256", "--profile", "tiny"], capsys)
    _assert_user_error(
        code,
        err,
        str(run / "recipe.yaml"),
        "another recipe (model.name 'resunet25d' → 'unet', name 'resunet25d' → 'unet256'",
    )
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    code, _, err = run_cli([*resume, *tiny, "--set", "train.epochs=2"], capsys)
    assert code == 0, err
    assert len((run / "log.csv").read_text().splitlines()) == 3  # header, epoch 0, the new epoch 1


def test_train_refuses_a_run_folder_another_training_holds(trained_run, tmp_path: Path, capsys) -> None:
    """A second training on a run folder in use (a scheduler requeueing a job still alive) stops at
    once, the run untouched; once the first ends, --resume proceeds."""
    import shutil

    from nephroseg.io.lock import exclusive_folder

    data, shared_run = trained_run
    run = tmp_path / "run"
    shutil.copytree(shared_run, run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    resume = ["train", "--data", str(data), "--out", str(run), "--resume", *TINY]
    with exclusive_folder(run, "training"):  # the first job, alive
        code, _, err = run_cli(resume, capsys)
    _assert_user_error(code, err, str(run), "another nephroseg training is running in this folder")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    code, _, err = run_cli(resume, capsys)  # the first job has ended
    assert code == 0, err


def test_bf16_training_runs_its_steps_with_a_loss_close_to_float32(
    trained_run, tmp_path: Path, capsys
) -> None:
    """``train.precision=bf16`` runs the forward pass under bfloat16 autocast; the loss stays float32
    and, from the same seed and data, within a few percent of the float32 run's."""
    data, run = trained_run
    args = [
        "train",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "bf16"),
        *TINY,
        "--set",
        "train.precision=bf16",
    ]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "bf16" / "summary.json").read_text())["steps"] == 2
    loss = {
        name: _first_loss(path / "log.csv") for name, path in (("fp32", run), ("bf16", tmp_path / "bf16"))
    }
    assert np.isfinite(loss["bf16"]) and loss["bf16"] == pytest.approx(loss["fp32"], rel=0.05)
    assert loss["bf16"] != loss["fp32"]  # bfloat16 rounding shows: the autocast did run


def test_postprocess_auto_stores_the_validation_choice(trained_run, tmp_path: Path, capsys) -> None:
    data, _ = trained_run
    run = tmp_path / "auto"
    args = ["train", "--data", str(data), "--out", str(run), *TINY, "--set", "train.postprocess=auto"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    recipe = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["recipe"]
    assert recipe["train"]["postprocess"] in ("none", "components")  # decided, no longer "auto"


def _first_loss(log: Path) -> float:
    header, first = log.read_text().splitlines()[:2]
    return float(first.split(",")[header.split(",").index("train_loss")])


def test_bad_recipe_override_names_the_key(trained_run, tmp_path: Path, capsys) -> None:
    data, _ = trained_run
    code, _, err = run_cli(
        ["train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY, "--set", "train.epochz=3"], capsys
    )
    _assert_user_error(code, err, "train.epochz", "unknown key")
    assert not (tmp_path / "r").exists()


def test_evaluate_missing_prediction(trained_run, tmp_path: Path, capsys) -> None:
    data, _ = trained_run
    save_nifti(
        tmp_path / "p" / "case_00000.nii.gz", np.zeros((12, 40, 48), np.uint8), kits_affine((3, 1.5, 1.5))
    )
    code, _, err = run_cli(["evaluate", "--pred", str(tmp_path / "p"), "--gt", str(data)], capsys)
    _assert_user_error(code, err, "no prediction for 2 ground-truth case(s)")
    assert files_under(tmp_path / "p") == ["case_00000.nii.gz"]


def test_help_on_every_command(capsys) -> None:
    for command in (
        "synth",
        "train",
        "cv",
        "sweep",
        "predict",
        "evaluate",
        "report",
        "demo",
        "models",
        "recipes",
    ):
        code, out, _ = run_cli([command, "--help"], capsys)
        assert code == 0 and "Usage" in out, command


def test_synth_length_sets_the_scanned_length(tmp_path: Path, capsys) -> None:
    out = tmp_path / "long"
    args = ["synth", "--out", str(out), "--cases", "1", "--size", "32", "--no-progress"]
    code, _, _ = run_cli([*args, "--thickness", "5", "5", "--length", "400", "420"], capsys)
    assert code == 0
    image = nib.load(out / "case_00000" / "imaging.nii.gz")
    assert 400 <= image.shape[0] * 5.0 <= 425  # 80 to 84 slices of 5 mm (rounded to whole slices)
    code, _, err = run_cli([*args, "--out", str(tmp_path / "bad"), "--length", "400", "40"], capsys)
    _assert_user_error(code, err, "z_extent_mm must satisfy")
    assert not (tmp_path / "bad").exists()
    # The help states the generator's default, which the command leaves to SynthConfig.
    from nephroseg.synth import SynthConfig

    low, high = SynthConfig().z_extent_mm
    _, out_text, _ = run_cli(["synth", "--help"], capsys)
    assert f"default {low:g} to {high:g}" in " ".join(out_text.replace("│", " ").split())


def test_sigterm_mid_write_leaves_no_temporary_file(tmp_path: Path, capsys, monkeypatch) -> None:
    """A scheduler's SIGTERM while a result is being written: the hidden temporary file is removed,
    the user's files stay, the command ends with 143 and says why."""
    import os
    import signal
    import time

    image = np.zeros((4, 6, 6), np.int16)
    save_nifti(tmp_path / "ct.nii.gz", image, kits_affine((3.0, 1.0, 1.0)), np.int16)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("the user's")
    real_save = nib.save

    def save_then_terminated(img, filename) -> None:
        real_save(img, filename)  # the temporary file is complete, not yet renamed into place
        assert Path(filename).name.startswith(".ct.nii.gz.")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler raises before this ends

    monkeypatch.setattr(nib, "save", save_then_terminated)
    before = signal.getsignal(signal.SIGTERM)
    code, _, err = run_cli(
        ["convert", str(tmp_path / "ct.nii.gz"), str(tmp_path / "out" / "ct.nii.gz")], capsys
    )
    assert code == 143 and err.strip() == "terminated"
    assert files_under(tmp_path / "out") == ["mine.txt"]
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handling restored


def test_ctrl_c_mid_write_says_interrupted_and_leaves_no_temporary_file(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    save_nifti(tmp_path / "ct.nii.gz", np.zeros((4, 6, 6), np.int16), kits_affine((3.0, 1.0, 1.0)), np.int16)
    real_save = nib.save

    def save_then_interrupted(img, filename) -> None:
        real_save(img, filename)
        raise KeyboardInterrupt

    monkeypatch.setattr(nib, "save", save_then_interrupted)
    code, _, err = run_cli(
        ["convert", str(tmp_path / "ct.nii.gz"), str(tmp_path / "out" / "ct.nii.gz")], capsys
    )
    assert code == 130 and err.strip() == "interrupted"
    assert files_under(tmp_path / "out") == []


def test_train_on_the_kits19_layout_with_test_cases_beside(tmp_path: Path, capsys) -> None:
    """KiTS19 ships its test cases (no segmentation) in the same folder: training leaves them out
    with a warning naming them, instead of refusing the dataset."""
    data = tmp_path / "kits"
    for i in range(4):
        image, label = blob_case(seed=i)
        save_nifti(data / f"case_{i:05d}" / "imaging.nii.gz", image, kits_affine((3.0, 1.5, 1.5)), np.int16)
        if i < 3:
            save_nifti(
                data / f"case_{i:05d}" / "segmentation.nii.gz", label, kits_affine((3.0, 1.5, 1.5)), np.uint8
            )
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--recipe", "resunet25d", "--profile", "tiny"]
    code, _, err = run_cli([*args, "--no-progress", "--set", "train.iterations_per_epoch=2"], capsys)
    assert code == 0, err
    assert f"warning: {data}: 1 case(s) without segmentation.nii.gz left out: case_00003" in err
    split = json.loads((run / "split.json").read_text())
    assert sorted(split["train"] + split["val"]) == ["case_00000", "case_00001", "case_00002"]


@pytest.mark.parametrize(
    "args,shown",
    [
        (["predict", "-i", "scans"], "Missing option '--output' / '-o'"),
        (["nosuch"], "No such command 'nosuch'"),
        (["synth", "--out", "x", "--cases", "0"], "Invalid value for '--cases'"),
        (["synth", "--out", "x", "--seed", "-1"], "Invalid value for '--seed'"),
        (
            ["train", "--data", "d", "--recipe", "resunet25d", "--out", "r", "--seed", "abc"],
            "Invalid value for '--seed'",
        ),
    ],
)
def test_usage_errors_say_what_and_where_help_is(args: list[str], shown: str, capsys) -> None:
    """Typer carries its own click: its usage errors must still end as a message and exit 2, not a
    traceback."""
    code, _, err = run_cli(args, capsys)
    assert code == 2 and shown in err and "Try 'nephroseg" in err and "Traceback" not in err


def test_version(capsys) -> None:
    from importlib.metadata import version

    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.startswith(f"nephroseg {version('nephroseg')} (torch {torch.__version__})")


@pytest.mark.parametrize(
    "command,shown",
    [
        (
            ["train", "--recipe", "resunet25d", "--profile", "tiny"],
            "cannot hold out 1 of 1 cases (holdout split",
        ),
        (
            ["cv", "--recipe", "resunet25d", "--profile", "tiny", "--folds", "3"],
            "3 folds need at least 3 cases, got 1",
        ),
    ],
)
def test_too_few_cases_for_the_split(command: list[str], shown: str, tmp_path: Path, capsys) -> None:
    """One labelled case cannot be split: one line naming the data folder, and no run folder made."""
    image, label = blob_case(seed=0)
    save_nifti(
        tmp_path / "one" / "case_00000" / "imaging.nii.gz", image, kits_affine((3.0, 1.5, 1.5)), np.int16
    )
    save_nifti(
        tmp_path / "one" / "case_00000" / "segmentation.nii.gz", label, kits_affine((3.0, 1.5, 1.5)), np.uint8
    )
    args = [command[0], "--data", str(tmp_path / "one"), "--out", str(tmp_path / "run"), *command[1:]]
    code, _, err = run_cli([*args, "--no-progress"], capsys)
    _assert_user_error(code, err, f"error: {tmp_path / 'one'}: ", shown)
    assert not (tmp_path / "run").exists()
