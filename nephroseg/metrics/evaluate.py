"""``nephroseg evaluate``: score prediction files against ground truth, per case and on average."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nephroseg.errors import NephrosegInputError, listed
from nephroseg.io import Volume, read_volume
from nephroseg.io.atomic import (
    atomic_write_csv,
    atomic_write_json,
    refuse_file_where_a_folder_goes,
    refuse_replacing_foreign_files,
)
from nephroseg.io.kits import check_same_grid
from nephroseg.io.listing import labels_by_case
from nephroseg.io.volume import block_in_grid, is_single_dicom_file, place_on_grid
from nephroseg.metrics.overlap import case_metrics
from nephroseg.progress import progress_bar


@dataclass(frozen=True)
class Evaluation:
    per_case: dict[str, dict[str, float]]
    mean: dict[str, float]

    @property
    def composite_dice(self) -> float:
        return self.mean["composite_dice"]


def score_arrays(per_case_arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> Evaluation:
    per_case = {cid: case_metrics(pred, truth) for cid, (pred, truth) in per_case_arrays.items()}
    return Evaluation(per_case, mean_metrics(per_case))


def mean_metrics(per_case: dict[str, dict[str, float]]) -> dict[str, float]:
    if not per_case:
        raise ValueError("no cases to average")
    keys = next(iter(per_case.values())).keys()
    return {k: _mean_ignoring_nan([m[k] for m in per_case.values()]) for k in keys}


def _mean_ignoring_nan(values: list[float]) -> float:
    """Scores that are undefined for a case (NaN) are left out; all undefined stays undefined."""
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    allow_missing: bool = False,
    cases: list[str] | None = None,
    progress: bool = False,
) -> Evaluation:
    """Every ground-truth case (of ``cases``, when given) needs a prediction unless ``allow_missing``;
    predictions without ground truth are ignored. Both must lie on the same grid. Folders are paired
    by case id; two files are paired with each other. ``progress``: a bar over the cases (210 KiTS19
    cases read twice take minutes)."""
    predictions = labels_by_case(pred_dir)
    truths = labels_by_case(gt_dir)
    if Path(pred_dir).is_file() and Path(gt_dir).is_file():  # two files named: compared, whatever their names
        predictions = {case_id: Path(pred_dir) for case_id in truths}
    if cases is not None:
        truths = {cid: path for cid, path in truths.items() if cid in set(cases)}
    missing = sorted(set(truths) - set(predictions))
    if missing and not allow_missing:
        shown = listed(missing)
        raise NephrosegInputError(pred_dir, f"no prediction for {len(missing)} ground-truth case(s): {shown}")
    per_case = {}
    paired = sorted(set(truths) & set(predictions))
    with progress_bar(progress) as bar:
        task = bar.add_task("evaluate", total=len(paired), status="")
        for case_id in paired:
            bar.update(task, status=case_id)
            truth, prediction = _read_pair(truths[case_id], predictions[case_id])
            check_same_grid(
                truths[case_id], predictions[case_id], *truth.stored_grid, *prediction.stored_grid
            )
            per_case[case_id] = case_metrics(prediction.array, truth.array)
            bar.advance(task)
    if not per_case:
        raise NephrosegInputError(pred_dir, "no prediction matches a ground-truth case id")
    return Evaluation(per_case, mean_metrics(per_case))


def _read_pair(truth_path: Path, prediction_path: Path) -> tuple[Volume, Volume]:
    """Truth and prediction on one grid. A DICOM Segmentation may omit empty frames: it is placed on
    the grid of the other file; of two, the one that fits inside the other is placed on it (ours
    keeps every frame, a reader's may hold only the slices it segmented)."""
    truth = read_volume(truth_path, label=True)
    prediction = read_volume(prediction_path, label=True)
    truth_seg, prediction_seg = is_single_dicom_file(truth_path), is_single_dicom_file(prediction_path)
    if prediction_seg and not (truth_seg and _fits(truth, prediction)):
        return truth, place_on_grid(prediction, truth, prediction_path)
    if truth_seg:
        return place_on_grid(truth, prediction, truth_path), prediction
    return truth, prediction


def _fits(inner: Volume, outer: Volume) -> bool:
    try:
        block_in_grid(inner, outer, Path())
    except NephrosegInputError:
        return False
    return True


def check_evaluation_target(out_dir: str | Path) -> None:
    """Refuse a folder whose ``metrics.csv`` or ``metrics.json`` is not an earlier evaluation's."""
    out_dir = Path(out_dir)
    refuse_file_where_a_folder_goes(out_dir, "--out names the folder of metrics.csv")
    beginnings = {
        out_dir / "metrics.csv": "case_id,kidney_tumor_dice,",
        out_dir / "metrics.json": '{\n "cases":',
    }
    refuse_replacing_foreign_files(beginnings, "nephroseg evaluate")


def write_evaluation(evaluation: Evaluation, out_dir: str | Path) -> tuple[Path, Path]:
    """``metrics.csv`` (a row per case and a final 'mean' row) and ``metrics.json``."""
    out_dir = Path(out_dir)
    check_evaluation_target(out_dir)
    columns = ["case_id", *evaluation.mean.keys()]
    rows: list[list[str]] = [columns]
    rows += [[case_id, *(f"{m[k]:.6f}" for k in columns[1:])] for case_id, m in evaluation.per_case.items()]
    rows.append(["mean", *(f"{evaluation.mean[k]:.6f}" for k in columns[1:])])
    csv_path, json_path = out_dir / "metrics.csv", out_dir / "metrics.json"
    atomic_write_csv(csv_path, rows)
    atomic_write_json(json_path, {"cases": evaluation.per_case, "mean": evaluation.mean})
    return csv_path, json_path
