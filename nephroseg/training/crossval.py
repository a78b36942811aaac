"""k-fold cross-validation (seed 001: five folds): one run per fold, each fold's held-out cases
predicted by that fold's best model, scored per fold and pooled over all cases.

``OUT/fold_K`` are ordinary run folders; ``OUT/out_of_fold/`` holds every case's prediction by the
fold that did not train on it. Re-running resumes: finished folds are skipped, an interrupted fold
continues from its last checkpoint, existing out-of-fold predictions are kept.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from nephroseg.data import kfold_splits
from nephroseg.errors import NephrosegInputError
from nephroseg.inference.predict import PredictionJob, load_models, run_jobs
from nephroseg.inference.sliding import make_segmenter
from nephroseg.io import atomic_write_text, labelled_cases
from nephroseg.io.atomic import atomic_write_json
from nephroseg.metrics import Evaluation, evaluate_folders, write_evaluation
from nephroseg.metrics.evaluate import mean_metrics
from nephroseg.recipe import Recipe
from nephroseg.training.checkpoint import refuse_other_kind_of_run
from nephroseg.training.distributed import DistContext, from_main, process_group
from nephroseg.training.session import run_started
from nephroseg.training.trainer import train

OUT_OF_FOLD = "out_of_fold"


@dataclass(frozen=True)
class CrossValidation:
    per_fold: list[dict[str, float]]  # mean metrics of each fold's held-out cases
    pooled: Evaluation  # every case scored once, by the fold that held it out


def cross_validate(
    data_dir: str | Path,
    recipe: Recipe,
    out_dir: str | Path,
    *,
    folds: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> CrossValidation:
    out_dir = Path(out_dir)
    refuse_other_kind_of_run(out_dir, "cross-validation")
    n_folds = folds or recipe.train.split.folds
    cases = labelled_cases(data_dir)
    by_id = {c.case_id: c for c in cases}
    try:
        splits = kfold_splits(list(by_id), seed, n_folds)
    except ValueError as err:
        raise NephrosegInputError(data_dir, f"{err} (labelled cases)") from err
    with process_group(device) as (ctx, torch_device):
        result = _train_folds(
            data_dir, recipe, out_dir, splits, by_id, seed, device, torch_device, ctx, progress
        )
        return from_main(result, ctx)


def _train_folds(
    data_dir,
    recipe: Recipe,
    out_dir: Path,
    splits,
    by_id,
    seed,
    device,
    torch_device,
    ctx: DistContext,
    progress,
) -> CrossValidation | None:
    """Every fold trained (by all ``torchrun`` ranks together), then predicted and scored by rank 0,
    which alone writes the out-of-fold results; the others return None."""
    oof_dir = out_dir / OUT_OF_FOLD
    n_folds = len(splits)
    per_fold: list[dict[str, float]] = []
    per_case: dict[str, dict[str, float]] = {}
    for fold, split in enumerate(splits):
        run_dir = out_dir / f"fold_{fold}"
        fold_recipe = recipe.with_overrides(
            {"train": {"split": {"kind": "kfold", "folds": n_folds, "fold": fold}}}, f"fold {fold}"
        )
        resume = run_started(run_dir, ctx)
        train(data_dir, fold_recipe, run_dir, seed=seed, resume=resume, device=device, progress=progress)
        if not ctx.is_main:
            continue
        jobs = [
            PredictionJob(cid, by_id[cid].imaging, oof_dir / f"{cid}.nii.gz")
            for cid in split.val
            if not (oof_dir / f"{cid}.nii.gz").exists()
        ]
        if jobs:
            segmenter = make_segmenter(load_models([run_dir], torch_device), torch_device)
            run_jobs(jobs, segmenter, progress)
        fold_eval = evaluate_folders(oof_dir, data_dir, cases=split.val)
        per_fold.append(fold_eval.mean)
        per_case.update(fold_eval.per_case)
    if not ctx.is_main:
        return None
    pooled = Evaluation(dict(sorted(per_case.items())), mean_metrics(per_case))
    write_evaluation(pooled, out_dir)
    _write_fold_table(out_dir, per_fold, pooled)
    return CrossValidation(per_fold, pooled)


def _write_fold_table(out_dir: Path, per_fold: list[dict[str, float]], pooled: Evaluation) -> None:
    keys = ["kidney_tumor_dice", "tumor_dice", "composite_dice"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["fold", *keys])
    for fold, metrics in enumerate(per_fold):
        writer.writerow([fold, *(f"{metrics[k]:.6f}" for k in keys)])
    writer.writerow(["pooled", *(f"{pooled.mean[k]:.6f}" for k in keys)])
    atomic_write_text(out_dir / "folds.csv", buffer.getvalue())
    summary = {"folds": per_fold, "pooled": pooled.mean}
    atomic_write_json(out_dir / "cv_summary.json", summary)
