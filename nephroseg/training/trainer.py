"""The training loop: prepare cases, sample 2.5D batches, optimize, validate by KiTS composite Dice,
checkpoint atomically every epoch, resume where a run stopped.

A run folder holds everything: ``recipe.yaml`` (resolved), ``split.json``, ``log.csv``,
``tensorboard/``, ``checkpoints/{last,best}.pt`` and ``summary.json``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from rich.progress import Progress
from torch.utils.data import DataLoader

from nephroseg.data import SliceDataset, SliceSampler, Split, make_split
from nephroseg.errors import NephrosegInputError
from nephroseg.inference.segmenter import SegmentationModel, Segmenter
from nephroseg.io import atomic_write_text, find_cases
from nephroseg.losses import build_loss
from nephroseg.metrics import kits_scores
from nephroseg.models import build_model, parameter_count
from nephroseg.preprocess import PreparedCase, foreground_statistics, prepare_case
from nephroseg.progress import progress_bar
from nephroseg.recipe import Recipe, TrainSpec
from nephroseg.runtime import resolve_device
from nephroseg.training.checkpoint import BEST_NAME, LAST_NAME, load_checkpoint, save_checkpoint
from nephroseg.training.logs import RunLog


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_checkpoint: Path
    best_composite_dice: float
    best_epoch: int
    epochs_done: int
    steps: int


def build_optimizer(parameters, spec: TrainSpec) -> torch.optim.Optimizer:
    if spec.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=spec.lr, weight_decay=spec.weight_decay)
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.SGD(
        parameters, lr=spec.lr, weight_decay=spec.weight_decay, momentum=0.99, nesterov=True
    )


def build_schedule(optimizer: torch.optim.Optimizer, spec: TrainSpec) -> torch.optim.lr_scheduler.LambdaLR:
    total = spec.epochs * spec.iterations_per_epoch

    def factor(step: int) -> float:
        progress = min(step / total, 1.0)
        if spec.lr_schedule == "poly":
            return (1.0 - progress) ** 0.9
        if spec.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _prepare_all(cases, spacing_mm, cache_dir: Path, progress: Progress, label: str) -> list[PreparedCase]:
    task = progress.add_task(label, total=len(cases), status="")
    prepared = []
    for case in cases:
        progress.update(task, status=case.case_id)
        prepared.append(prepare_case(case, spacing_mm, cache_dir))
        progress.advance(task)
    return prepared


def _resolve_split(run_dir: Path, case_ids: list[str], recipe: Recipe, seed: int, resume: bool) -> Split:
    path = run_dir / "split.json"
    split = make_split(case_ids, recipe.train.split, seed)
    if resume and path.exists():
        stored = json.loads(path.read_text())
        if stored["train"] != split.train or stored["val"] != split.val:
            raise NephrosegInputError(
                path, "the data or seed changed since this run started; resume needs the same"
            )
    atomic_write_text(
        path, json.dumps({"train": split.train, "val": split.val, "test": split.test}, indent=1)
    )
    return split


def _with_intensity_statistics(recipe: Recipe, cases: list[PreparedCase]) -> Recipe:
    spec = recipe.preprocess
    if spec.normalization != "zscore" or spec.zscore_mean is not None:
        return recipe
    mean, std = foreground_statistics([np.asarray(c.hu)[np.asarray(c.label) > 0] for c in cases], spec)
    return recipe.with_overrides(
        {"preprocess": {"zscore_mean": mean, "zscore_std": std}}, "z-score statistics"
    )


def validate(model: SegmentationModel, cases: list[PreparedCase], device: torch.device) -> dict[str, float]:
    """Mean KiTS scores over the validation cases, on the model's own grid."""
    model.network.eval()
    segmenter = Segmenter([model], device=device, batch_size=16)
    scores = [kits_scores(segmenter.segment(np.asarray(c.hu), c.spacing), np.asarray(c.label)) for c in cases]
    model.network.train()
    return {
        "val_kidney_tumor_dice": float(np.mean([s.kidney_tumor_dice for s in scores])),
        "val_tumor_dice": float(np.mean([s.tumor_dice for s in scores])),
        "val_composite_dice": float(np.mean([s.composite_dice for s in scores])),
    }


def train(
    data_dir: str | Path,
    recipe: Recipe,
    run_dir: str | Path,
    *,
    seed: int = 0,
    resume: bool = False,
    device: str = "cpu",
    cache_dir: str | Path | None = None,
    progress: bool = True,
    tensorboard: bool = True,
) -> TrainResult:
    """Train ``recipe`` on the labelled KiTS-layout cases in ``data_dir``; write the run to ``run_dir``."""
    run_dir = Path(run_dir)
    checkpoints = run_dir / "checkpoints"
    last_path = checkpoints / LAST_NAME
    if last_path.exists() and not resume:
        raise NephrosegInputError(
            run_dir, "already holds a training run: pass --resume to continue it, or a new folder"
        )
    torch_device = resolve_device(device)
    spec = recipe.train
    cases = find_cases(data_dir, require_labels=True)
    split = _resolve_split(run_dir, [c.case_id for c in cases], recipe, seed, resume)
    by_id = {c.case_id: c for c in cases}
    cache = Path(cache_dir) if cache_dir else run_dir / "cache"

    with progress_bar(progress) as bar:
        train_cases = _prepare_all(
            [by_id[i] for i in split.train], recipe.preprocess.spacing_mm, cache, bar, "prepare"
        )
        val_cases = _prepare_all(
            [by_id[i] for i in split.val], recipe.preprocess.spacing_mm, cache, bar, "prepare val"
        )
    recipe = _with_intensity_statistics(recipe, train_cases)
    atomic_write_text(
        run_dir / "recipe.yaml", yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    )

    torch.manual_seed(seed)
    network = build_model(recipe.model).to(torch_device)
    model = SegmentationModel(network, recipe)
    optimizer = build_optimizer(network.parameters(), spec)
    schedule = build_schedule(optimizer, spec)
    loss_fn = build_loss(spec, recipe.model.num_classes).to(torch_device)

    start_epoch, step, best_score, best_epoch = 0, 0, -1.0, -1
    if resume and last_path.exists():
        state = load_checkpoint(last_path, map_location=torch_device)
        network.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        schedule.load_state_dict(state["schedule_state"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
        best_score, best_epoch = float(state["best_score"]), int(state["best_epoch"])

    dataset = SliceDataset(train_cases, recipe.preprocess, recipe.augment, recipe.model.in_slices)
    sampler = SliceSampler(train_cases, spec, seed)
    loader = DataLoader(
        dataset,
        batch_size=spec.batch_size,
        sampler=sampler,
        num_workers=spec.num_workers,
        collate_fn=None,
        persistent_workers=False,
    )
    log = RunLog(run_dir, start_epoch, tensorboard=tensorboard)
    n_parameters = parameter_count(network)
    train_seconds = 0.0
    try:
        with progress_bar(progress) as bar:
            task = bar.add_task("train", total=spec.epochs * spec.iterations_per_epoch, status="")
            bar.update(task, completed=start_epoch * spec.iterations_per_epoch)
            for epoch in range(start_epoch, spec.epochs):
                network.train()
                sampler.set_epoch(epoch)
                started, losses = time.perf_counter(), []
                for images, labels in loader:
                    images, labels = images.to(torch_device), labels.to(torch_device)
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(network(images), labels)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    step += 1
                    losses.append(float(loss.detach()))
                    bar.update(
                        task, advance=1, status=f"epoch {epoch + 1}/{spec.epochs} loss {np.mean(losses):.4f}"
                    )
                seconds = time.perf_counter() - started
                train_seconds += seconds
                row: dict = {
                    "epoch": epoch,
                    "step": step,
                    "train_loss": float(np.mean(losses)),
                    "seconds": seconds,
                }
                row["lr"] = optimizer.param_groups[0]["lr"]
                is_last = epoch + 1 == spec.epochs
                if val_cases and ((epoch + 1) % spec.val_every == 0 or is_last):
                    row.update(validate(model, val_cases, torch_device))
                    if row["val_composite_dice"] > best_score:
                        best_score, best_epoch = row["val_composite_dice"], epoch
                        bar.update(task, status=f"epoch {epoch + 1}: best composite {best_score:.3f}")
                payload = {
                    "recipe": recipe.model_dump(mode="json"),
                    "model_state": network.state_dict(),
                    "optimizer_state": optimizer.state_dict(),
                    "schedule_state": schedule.state_dict(),
                    "epoch": epoch + 1,
                    "step": step,
                    "seed": seed,
                    "best_score": best_score,
                    "best_epoch": best_epoch,
                    "metrics": {k: v for k, v in row.items() if k.startswith("val_")},
                }
                if best_epoch == epoch:
                    save_checkpoint(checkpoints / BEST_NAME, payload)
                save_checkpoint(last_path, payload)
                log.add(row)
    finally:
        log.close()

    best_path = checkpoints / BEST_NAME if (checkpoints / BEST_NAME).exists() else last_path
    summary = {
        "recipe": recipe.name,
        "model": recipe.model.name,
        "parameters": n_parameters,
        "best_epoch": best_epoch,
        "best_val_composite_dice": best_score,
        "epochs": spec.epochs,
        "steps": step,
        "seconds_per_iteration": train_seconds
        / max(1, (spec.epochs - start_epoch) * spec.iterations_per_epoch),
        "train_cases": split.train,
        "val_cases": split.val,
        "test_cases": split.test,
        "seed": seed,
        "device": str(torch_device),
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    return TrainResult(run_dir, best_path, best_score, best_epoch, spec.epochs, step)
