"""3D patch training (nnU-Net-class): fingerprint → plan → preprocessed cache → patches → DiceCE with
deep supervision, SGD (Nesterov, momentum 0.99) with poly decay; validation by sliding windows and
KiTS composite Dice; the same run folder, checkpoints, resume and logs as the 2.5D trainer.

Under ``torchrun`` every rank trains a DistributedDataParallel replica on its own share of the
patches; rank 0 validates, writes checkpoints and logs, and ``summary.json`` records a digest of
every rank's weights.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss
from torch.utils.data import DataLoader

from nephroseg.data.patches import PatchDataset, PatchSampler
from nephroseg.errors import NephrosegInputError
from nephroseg.inference.postprocess import postprocess_labels
from nephroseg.inference.segmenter import SegmentationModel
from nephroseg.inference.sliding import VolumetricSegmenter
from nephroseg.io import KitsCase, atomic_write_text, labelled_cases
from nephroseg.losses import NormalizedDeepSupervisionLoss
from nephroseg.metrics import kits_scores
from nephroseg.models import build_model
from nephroseg.models.dynunet3d import plan_unet
from nephroseg.preprocess.fingerprint import Fingerprint, combine_fingerprints
from nephroseg.preprocess.volumetric import (
    VolumeCase,
    VolumetricSettings,
    case_fingerprint,
    prepare_volume_case,
)
from nephroseg.progress import progress_bar
from nephroseg.recipe import Recipe
from nephroseg.runtime import autocast
from nephroseg.training.checkpoint import LAST_NAME, load_checkpoint
from nephroseg.training.distributed import (
    DistContext,
    main_first,
    process_group,
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

GRADIENT_CLIP = 12.0  # nnU-Net


def plan_recipe(recipe: Recipe, fingerprint: Fingerprint) -> Recipe:
    """Fill in what the fingerprint decides: target spacing, network plan (and the patch padded to
    it), and the CT normalization (foreground percentiles, mean and std)."""
    spec = recipe.volumetric
    assert spec is not None
    target = tuple(spec.target_spacing or fingerprint.target_spacing(spec.anisotropy_threshold))
    plan = plan_unet(tuple(spec.patch_size), target)
    options = {  # merged into the recipe's own options by with_overrides
        "patch_size": list(plan.patch_size),
        "spacing": list(target),
        "deep_supervision": spec.deep_supervision,
    }
    overrides: dict = {
        "volumetric": {"target_spacing": list(target), "patch_size": list(plan.patch_size)},
        "model": {"in_slices": 1, "options": options},
    }
    if recipe.preprocess.zscore_mean is None:
        low, high = fingerprint.percentile_00_5, fingerprint.percentile_99_5
        overrides["preprocess"] = {
            "normalization": "zscore",
            "hu_min": low,
            "hu_max": max(high, low + 1.0),
            "zscore_mean": fingerprint.mean,
            "zscore_std": fingerprint.std,
        }
    return recipe.with_overrides(overrides, "plan from the dataset fingerprint")


def build_volumetric_loss(deep_supervision: bool) -> torch.nn.Module:
    """Dice (foreground classes, batch Dice) + cross-entropy; with deep supervision the heads are
    weighted 1, 1/2, 1/4, … normalized to sum 1 (as nnU-Net)."""
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    return NormalizedDeepSupervisionLoss(dice_ce, weight_mode="exp") if deep_supervision else dice_ce


def _settings(recipe: Recipe) -> VolumetricSettings:
    spec = recipe.volumetric
    assert spec is not None and spec.target_spacing is not None
    return VolumetricSettings(
        target_spacing=tuple(spec.target_spacing),  # type: ignore[arg-type]
        label_resampling=spec.label_resampling,
        crop_to_body=spec.crop_to_body,
        body_threshold_hu=spec.body_threshold_hu,
        anisotropy_threshold=spec.anisotropy_threshold,
    )


def prepare_cohort(
    train_cases: list[KitsCase], val_cases: list[KitsCase], recipe: Recipe, cache: Path, progress: bool
) -> tuple[Recipe, Fingerprint, list[VolumeCase], list[VolumeCase]]:
    """Fingerprint the training cases, plan the recipe, preprocess every case (all cached)."""
    spec = recipe.volumetric
    assert spec is not None
    with progress_bar(progress) as bar:
        task = bar.add_task("fingerprint", total=len(train_cases), status="")
        parts = []
        for case in train_cases:
            parts.append(case_fingerprint(case, spec.body_threshold_hu, cache))
            bar.advance(task)
        fingerprint = combine_fingerprints(parts)
        planned = plan_recipe(recipe, fingerprint)
        settings = _settings(planned)
        prepared: list[list[VolumeCase]] = []
        for label, cases in (("preprocess", train_cases), ("preprocess val", val_cases)):
            task = bar.add_task(label, total=len(cases), status="")
            prepared.append([])
            for case in cases:
                bar.update(task, status=case.case_id)
                prepared[-1].append(prepare_volume_case(case, settings, cache))
                bar.advance(task)
    return planned, fingerprint, prepared[0], prepared[1]


def training_precision(device: torch.device) -> str:
    """nnU-Net's mixed precision: float16 autocast with a gradient scaler on CUDA, float32 on a CPU;
    validation runs in it too."""
    return "fp16" if device.type == "cuda" else "fp32"


def validate_volumetric(
    model: SegmentationModel, cases: list[VolumeCase], device: torch.device, decide_postprocess: bool
) -> tuple[dict[str, float], str]:
    """Mean KiTS scores over the validation cases on the model grid, and the post-processing choice
    ('components' when it raises the composite Dice, else 'none'; fixed unless ``decide_postprocess``)."""
    model.network.eval()
    segmenter = VolumetricSegmenter([model], device, postprocess=False, precision=training_precision(device))
    plain, processed = [], []
    for case in cases:
        labels = segmenter.model_grid_labels(np.asarray(case.hu, dtype=np.float32))
        truth = np.asarray(case.label)
        plain.append(kits_scores(labels, truth))
        processed.append(kits_scores(postprocess_labels(labels), truth))
    model.network.train()
    fixed = model.recipe.volumetric.postprocess  # type: ignore[union-attr]
    return postprocess_choice(plain, processed, decide_postprocess, fixed)


def _run_epoch(
    session: Session,
    forward: torch.nn.Module,
    loader: DataLoader,
    loss_fn: torch.nn.Module,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    bar,
    task,
) -> float:
    losses: list[float] = []
    precision = training_precision(device)
    forward.train()
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        session.optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = loss_fn(forward(images), labels)
        check_finite(loss, session)
        scaler.scale(loss).backward()
        scaler.unscale_(session.optimizer)
        torch.nn.utils.clip_grad_norm_(forward.parameters(), GRADIENT_CLIP)
        scaler.step(session.optimizer)
        scaler.update()
        finish_step(session, loss, losses, bar, task)
    return float(np.mean(losses)) if losses else float("nan")


def train_volumetric(
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
    """Train a 3D recipe (``model`` of input kind "3d", ``volumetric`` section) into ``run_dir``."""
    if recipe.volumetric is None:
        raise NephrosegInputError("recipe", f"{recipe.name}: a 3D model needs a 'volumetric' section")
    with process_group(device) as (ctx, torch_device), training_folder(Path(run_dir), ctx) as fresh:
        return _train(
            data_dir, recipe, Path(run_dir), ctx, torch_device, seed, resume, cache_dir, progress,
            tensorboard, fresh,
        )  # fmt: skip


def _train(
    data_dir,
    recipe: Recipe,
    run_dir: Path,
    ctx: DistContext,
    torch_device: torch.device,
    seed,
    resume,
    cache_dir,
    progress,
    tensorboard,
    fresh: bool,
) -> TrainResult:
    checkpoints = run_dir / "checkpoints"
    last_path = checkpoints / LAST_NAME
    if last_path.exists() and not resume:
        raise NephrosegInputError(run_dir, "already holds a training run: pass --resume to continue it")
    progress = progress and ctx.is_main
    cache = Path(cache_dir) if cache_dir else run_dir / "cache"
    try:
        cases = labelled_cases(data_dir)
        split = resolve_split(data_dir, run_dir, [c.case_id for c in cases], recipe, seed, resume)
        by_id = {c.case_id: c for c in cases}
        prepare_started = time.perf_counter()
        train_val = [by_id[i] for i in split.train], [by_id[i] for i in split.val]
        recipe_planned, fingerprint, train_cases, val_cases = main_first(
            ctx, lambda: prepare_cohort(*train_val, recipe, cache, progress)
        )
    except NephrosegInputError:
        if fresh and ctx.is_main:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    prepare_seconds = time.perf_counter() - prepare_started
    recipe = recipe_planned
    spec, vol = recipe.train, recipe.volumetric
    assert vol is not None
    if ctx.is_main:
        write_run_files(run_dir, recipe, split)
        atomic_write_text(run_dir / "fingerprint.json", json.dumps(fingerprint.to_json(), indent=1))

    torch.manual_seed(seed)
    network = build_model(recipe.model).to(torch_device)
    forward = training_forward(network, ctx, torch_device)
    optimizer = build_optimizer(network.parameters(), spec)
    session = Session(SegmentationModel(network, recipe), optimizer, build_schedule(optimizer, spec), seed)
    session.averaged = weight_average(network, spec.ema_decay)
    if resume and last_path.exists():
        state = load_checkpoint(last_path, map_location=torch_device)
        session.restore(state)
        if "postprocess" in state:
            session.model.recipe = recipe.with_overrides(
                {"volumetric": {"postprocess": state["postprocess"]}}, "checkpoint"
            )
    start_epoch = session.epoch
    decide_postprocess = vol.postprocess == "auto"
    # The plan may leave too few levels for auxiliary heads; the network knows whether it has them.
    loss_fn = build_volumetric_loss(bool(getattr(network, "deep_supervision", False)))
    scaler = torch.amp.GradScaler("cuda", enabled=training_precision(torch_device) == "fp16")
    dataset = PatchDataset(train_cases, recipe, seed, augment=vol.augment)
    loader = DataLoader(
        dataset,
        batch_size=spec.batch_size,
        sampler=PatchSampler(spec.iterations_per_epoch, spec.batch_size, ctx.rank, ctx.world_size),
        num_workers=spec.num_workers,
        pin_memory=torch_device.type == "cuda",
    )
    log = RunLog(run_dir, start_epoch, tensorboard=tensorboard) if ctx.is_main else None
    try:
        with progress_bar(progress) as bar:
            task = bar.add_task("train", total=spec.epochs * spec.iterations_per_epoch, status="")
            bar.update(task, completed=start_epoch * spec.iterations_per_epoch)
            while session.epoch < spec.epochs:
                dataset.set_epoch(session.epoch)
                row = timed_epoch(
                    session,
                    lambda: _run_epoch(session, forward, loader, loss_fn, scaler, torch_device, bar, task),
                )
                if ctx.is_main and val_cases and validation_due(session):
                    metrics, choice = validate_volumetric(
                        session.evaluated(), val_cases, torch_device, decide_postprocess
                    )
                    row.update(metrics)
                    if session.record_validation(row, spec):
                        session.model.recipe = recipe.with_overrides(
                            {"volumetric": {"postprocess": choice}}, "validation"
                        )
                end_epoch(
                    session, row, ctx, checkpoints, log,
                    postprocess=session.model.recipe.volumetric.postprocess,  # type: ignore[union-attr]
                    fingerprint=fingerprint.to_json(),
                )  # fmt: skip
    finally:
        if log is not None:
            log.close()
    summary = {
        **run_summary(recipe, network, session, split, seed, torch_device, prepare_seconds),
        "target_spacing": list(vol.target_spacing or ()),
        "patch_size": list(vol.patch_size),
        "postprocess": session.model.recipe.volumetric.postprocess,  # type: ignore[union-attr]
    }
    return finish_run(run_dir, network, session, ctx, summary)
