"""The training loop: prepare cases, sample 2.5D batches, optimize, validate by KiTS composite Dice,
checkpoint atomically every epoch, resume where a run stopped.

A run folder holds everything: ``recipe.yaml`` (resolved), ``split.json``, ``log.csv``,
``tensorboard/``, ``checkpoints/{last,best}.pt`` and ``summary.json``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress
from torch.utils.data import DataLoader

from nephroseg.data import SliceDataset, SliceSampler
from nephroseg.errors import NephrosegInputError
from nephroseg.inference.postprocess import postprocess_labels
from nephroseg.inference.segmenter import SegmentationModel, Segmenter
from nephroseg.io import labelled_cases
from nephroseg.losses import build_loss
from nephroseg.metrics import kits_scores
from nephroseg.models import build_model, model_info
from nephroseg.models.weights import load_local_weights
from nephroseg.preprocess import PreparedCase, foreground_statistics, prepare_case, prepare_kidney_crops
from nephroseg.progress import progress_bar
from nephroseg.recipe import PreprocessSpec, Recipe
from nephroseg.runtime import autocast
from nephroseg.training.checkpoint import LAST_NAME, load_checkpoint, refuse_other_kind_of_run
from nephroseg.training.distributed import (
    DistContext,
    main_first,
    process_group,
    share_main_buffers,
    training_folder,
    training_forward,
)
from nephroseg.training.logs import RunLog
from nephroseg.training.session import (
    Session,
    TrainResult,
    build_optimizer,
    build_schedule,
    check_finite,
    end_epoch,
    finish_run,
    finish_step,
    postprocess_choice,
    resolve_split,
    run_summary,
    timed_epoch,
    validation_due,
    weight_average,
    write_run_files,
)


def _prepare_all(
    cases, spec: PreprocessSpec, cache_dir: Path, progress: Progress, label: str
) -> list[PreparedCase]:
    """The cases on the model's grid; for a kidney-crop (refine) model, one crop per kidney."""
    task = progress.add_task(label, total=len(cases), status="")
    prepared = []
    for case in cases:
        progress.update(task, status=case.case_id)
        if spec.kidney_crop_mm is None:
            prepared.append(prepare_case(case, spec.spacing_mm, cache_dir))
        else:
            prepared.extend(prepare_kidney_crops(case, spec.spacing_mm, spec.kidney_crop_mm, cache_dir))
        progress.advance(task)
    return prepared


def _with_intensity_statistics(recipe: Recipe, cases: list[PreparedCase]) -> Recipe:
    spec = recipe.preprocess
    if spec.normalization != "zscore" or spec.zscore_mean is not None:
        return recipe
    mean, std = foreground_statistics([np.asarray(c.hu)[np.asarray(c.label) > 0] for c in cases], spec)
    return recipe.with_overrides(
        {"preprocess": {"zscore_mean": mean, "zscore_std": std}}, "z-score statistics"
    )


def validate(
    model: SegmentationModel,
    cases: list[PreparedCase],
    device: torch.device,
    decide_postprocess: bool = False,
) -> tuple[dict[str, float], str]:
    """Mean KiTS scores over the validation cases on the model's own grid, and the post-processing
    choice ('components' when it raises the composite Dice, else 'none'; the recipe's own unless
    ``decide_postprocess``). The scores reported are those of the choice."""
    model.network.eval()
    segmenter = Segmenter([model], device=device, batch_size=16, postprocess=False)
    plain, processed = [], []
    for case in cases:
        labels, truth = segmenter.segment(np.asarray(case.hu), case.spacing), np.asarray(case.label)
        plain.append(kits_scores(labels, truth))
        processed.append(kits_scores(postprocess_labels(labels), truth))
    model.network.train()
    return postprocess_choice(plain, processed, decide_postprocess, model.recipe.train.postprocess)


def _prepare_data(
    data_dir, recipe: Recipe, run_dir: Path, seed: int, resume: bool, cache: Path, progress: bool
):
    cases = labelled_cases(data_dir)
    split = resolve_split(data_dir, run_dir, [c.case_id for c in cases], recipe, seed, resume)
    by_id = {c.case_id: c for c in cases}
    spec = recipe.preprocess
    with progress_bar(progress) as bar:
        train_cases = _prepare_all([by_id[i] for i in split.train], spec, cache, bar, "prepare")
        val_cases = _prepare_all([by_id[i] for i in split.val], spec, cache, bar, "prepare val")
    return split, train_cases, val_cases


def _run_epoch(
    session: Session,
    forward: torch.nn.Module,
    loader: DataLoader,
    loss_fn,
    device: torch.device,
    bar: Progress,
    task,
) -> float:
    """One epoch of steps through ``forward`` (``distributed.training_forward``)."""
    losses: list[float] = []
    forward.train()
    precision = session.model.recipe.train.precision
    own_loss = hasattr(session.model.network, "training_loss")
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        session.optimizer.zero_grad(set_to_none=True)
        # A model with its own objective supplies it; others are scored by the recipe's
        # segmentation loss on their logits.
        with autocast(device, precision):
            outputs = forward(images, labels) if own_loss else forward(images)
        loss = outputs.float() if own_loss else loss_fn(outputs, labels)
        check_finite(loss, session)
        loss.backward()
        session.optimizer.step()
        finish_step(session, loss, losses, bar, task)
    return float(np.mean(losses))


def _check_tile_size(network: torch.nn.Module, recipe: Recipe) -> None:
    """Training tiles go through every down-sampling whole: a size the network cannot halve that often
    would fail at the first skip connection with a shape error naming no setting."""
    divisor = getattr(network, "divisor", model_info(recipe.model.name).divisor)
    sizes = {"preprocess.size": recipe.preprocess.size, "train.crop_size": recipe.train.crop_size}
    for setting, size in sizes.items():
        if size and size % divisor:
            fits = max(divisor, round(size / divisor) * divisor)
            raise NephrosegInputError(
                setting,
                f"{size} is not a multiple of {divisor}, which {recipe.model.name}'s down-sampling "
                f"needs (e.g. {fits})",
            )


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
    weights: str | Path | None = None,
) -> TrainResult:
    """Train ``recipe`` on the labelled KiTS-layout cases in ``data_dir``; write the run to ``run_dir``.

    ``weights``: a local state dict loaded into the new model (or its encoder) before the first
    step; ignored when a run is resumed (its checkpoint holds the weights).

    Bad input found while the cases are read leaves no run folder behind (when this call made it).
    A 3D model (input kind "3d") is trained by patches instead: see ``training.volumetric``.
    """
    refuse_other_kind_of_run(run_dir, "training")
    if model_info(recipe.model.name).input_kind == "3d":
        if recipe.preprocess.kidney_crop_mm is not None:
            raise NephrosegInputError(
                "preprocess.kidney_crop_mm", "kidney crops are for 2D/2.5D models (3D: coarse-to-fine)"
            )
        from nephroseg.training.volumetric import train_volumetric

        return train_volumetric(
            data_dir,
            recipe,
            run_dir,
            seed=seed,
            resume=resume,
            device=device,
            cache_dir=cache_dir,
            progress=progress,
            tensorboard=tensorboard,
        )
    with process_group(device) as (ctx, torch_device), training_folder(Path(run_dir), ctx) as fresh:
        return _train_slices(
            data_dir, recipe, Path(run_dir), ctx, torch_device, seed, resume, cache_dir, progress,
            tensorboard, weights, fresh,
        )  # fmt: skip


def _train_slices(
    data_dir,
    recipe: Recipe,
    run_dir: Path,
    ctx: DistContext,
    torch_device: torch.device,
    seed: int,
    resume: bool,
    cache_dir,
    progress: bool,
    tensorboard: bool,
    weights,
    fresh: bool,
) -> TrainResult:
    """The 2.5D (and 2D) loop. Under ``torchrun`` every rank trains a DistributedDataParallel replica
    on its own share of the batches (``train.batch_size`` per process); rank 0 validates, writes
    checkpoints and logs."""
    torch.manual_seed(seed)
    network = build_model(recipe.model)
    _check_tile_size(network, recipe)
    checkpoints = run_dir / "checkpoints"
    last_path = checkpoints / LAST_NAME
    if last_path.exists() and not resume:
        raise NephrosegInputError(run_dir, "already holds a training run: pass --resume to continue it")
    progress = progress and ctx.is_main
    spec = recipe.train
    cache = Path(cache_dir) if cache_dir else run_dir / "cache"
    prepare_started = time.perf_counter()
    try:
        split, train_cases, val_cases = main_first(
            ctx, lambda: _prepare_data(data_dir, recipe, run_dir, seed, resume, cache, progress)
        )
    except NephrosegInputError:
        if fresh and ctx.is_main:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    prepare_seconds = time.perf_counter() - prepare_started
    recipe = _with_intensity_statistics(recipe, train_cases)
    if ctx.is_main:
        write_run_files(run_dir, recipe, split)

    network = network.to(torch_device)
    optimizer = build_optimizer(network.parameters(), spec)
    session = Session(SegmentationModel(network, recipe), optimizer, build_schedule(optimizer, spec), seed)
    session.averaged = weight_average(network, spec.ema_decay)
    decide_postprocess = spec.postprocess == "auto"
    if resume and last_path.exists():
        state = load_checkpoint(last_path, map_location=torch_device)
        session.restore(state)
        chosen = state["recipe"]["train"].get("postprocess", spec.postprocess)
        session.model.recipe = recipe.with_overrides({"train": {"postprocess": chosen}}, "checkpoint")
    elif weights is not None:
        try:
            load_local_weights(network, weights)
        except NephrosegInputError:
            if fresh and ctx.is_main:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
    forward = training_forward(network, ctx, torch_device)
    start_epoch = session.epoch
    deep_supervision = bool(getattr(network, "deep_supervision", False))
    loss_fn = build_loss(spec, recipe.model.num_classes, deep_supervision).to(torch_device)
    sampler = SliceSampler(train_cases, spec, seed, ctx.rank, ctx.world_size)
    loader = DataLoader(
        SliceDataset(
            train_cases, recipe.preprocess, recipe.augment, recipe.model.in_slices, size=spec.crop_size
        ),
        batch_size=spec.batch_size,
        sampler=sampler,
        num_workers=spec.num_workers,
        pin_memory=torch_device.type == "cuda",
    )
    log = RunLog(run_dir, start_epoch, tensorboard=tensorboard) if ctx.is_main else None
    try:
        with progress_bar(progress) as bar:
            task = bar.add_task("train", total=spec.epochs * spec.iterations_per_epoch, status="")
            bar.update(task, completed=start_epoch * spec.iterations_per_epoch)
            while session.epoch < spec.epochs:
                sampler.set_epoch(session.epoch)
                row = timed_epoch(
                    session, lambda: _run_epoch(session, forward, loader, loss_fn, torch_device, bar, task)
                )
                share_main_buffers(network, ctx)
                if ctx.is_main and val_cases and validation_due(session):
                    evaluated = session.evaluated()
                    metrics, choice = validate(evaluated, val_cases, torch_device, decide_postprocess)
                    row.update(metrics)
                    if session.record_validation(row, spec):
                        session.model.recipe = recipe.with_overrides(
                            {"train": {"postprocess": choice}}, "validation"
                        )
                        bar.update(
                            task, status=f"epoch {session.epoch + 1}: best composite {session.best_score:.3f}"
                        )
                end_epoch(session, row, ctx, checkpoints, log)
    finally:
        if log is not None:
            log.close()
    summary = run_summary(recipe, network, session, split, seed, torch_device, prepare_seconds)
    return finish_run(run_dir, network, session, ctx, summary)
