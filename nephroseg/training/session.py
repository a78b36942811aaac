"""What the 2.5D and 3D trainers share: the optimizer and its schedule, the state a run saves and
resumes (``Session``), the epoch's log row, checkpoints and validation cadence, and the run's
summary. Each trainer keeps only its own loop and data."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from rich.progress import Progress
from torch.optim.swa_utils import AveragedModel

from nephroseg.data import Split, make_split
from nephroseg.errors import NephrosegInputError
from nephroseg.inference.segmenter import SegmentationModel
from nephroseg.io import atomic_write_text
from nephroseg.io.atomic import atomic_write_json
from nephroseg.models import parameter_count
from nephroseg.recipe import Recipe, TrainSpec
from nephroseg.training.checkpoint import BEST_NAME, LAST_NAME, save_checkpoint
from nephroseg.training.distributed import DistContext, barrier, from_main, weight_checksums
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
    """Adam and AdamW run fused (one kernel over all the parameters on CPU or CUDA): the same update
    as PyTorch's per-parameter loop, 3× faster on a CPU (docs/benchmarks.md, "CPU speed-ups")."""
    if spec.optimizer in ("adam", "adamw"):
        adam = torch.optim.Adam if spec.optimizer == "adam" else torch.optim.AdamW
        return adam(parameters, lr=spec.lr, weight_decay=spec.weight_decay, fused=True)
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


def weight_average(network: torch.nn.Module, decay: float | None) -> AveragedModel | None:
    """An exponential moving average of the weights (and BatchNorm statistics), or None. The decay
    warms up as (1 + n) / (10 + n): the first averages follow the fast-changing early weights."""
    if decay is None:
        return None

    def ema(averaged: torch.Tensor, current: torch.Tensor, n_averaged: torch.Tensor) -> torch.Tensor:
        d = torch.clamp((1.0 + n_averaged) / (10.0 + n_averaged), max=decay).to(averaged.dtype)
        return averaged * d + current * (1.0 - d)

    return AveragedModel(network, avg_fn=ema, use_buffers=True)


def resolve_split(
    data_dir: str | Path, run_dir: Path, case_ids: list[str], recipe: Recipe, seed: int, resume: bool
) -> Split:
    path = run_dir / "split.json"
    try:
        split = make_split(case_ids, recipe.train.split, seed)
    except ValueError as err:  # too few cases for the recipe's split
        raise NephrosegInputError(data_dir, f"{err} ({recipe.train.split.kind} split of the recipe)") from err
    if resume and path.exists():
        stored = json.loads(path.read_text())
        if stored["train"] != split.train or stored["val"] != split.val:
            raise NephrosegInputError(
                path, "the data or seed changed since this run started; resume needs the same"
            )
    if resume and recipe.volumetric is None and (run_dir / "recipe.yaml").exists():
        check_same_recipe(run_dir / "recipe.yaml", recipe)  # a 3D run's file holds its planned recipe
    return split


# What a resumed run may change (more epochs continue it as a longer run would have trained), and
# what training derives from the data into the recipe it records (the intensity statistics).
RESUMABLE_CHANGES = {"train.epochs", "preprocess.zscore_mean", "preprocess.zscore_std"}


def check_same_recipe(stored_path: Path, recipe: Recipe) -> None:
    """Refuse to resume under another recipe: the optimizer keeps its state, the recipe file would
    record settings the earlier epochs did not train with, and another network does not load. Fields
    the stored file lacks (added to recipes since) are not compared."""
    try:
        stored = _flat(yaml.safe_load(stored_path.read_text()) or {})
    except (OSError, yaml.YAMLError) as err:
        raise NephrosegInputError(
            stored_path, f"cannot be read ({type(err).__name__}): resume needs it"
        ) from err
    asked = _flat(recipe.model_dump(mode="json"))
    changed = [k for k in stored if k in asked and stored[k] != asked[k] and k not in RESUMABLE_CHANGES]
    changed.sort(key=lambda k: (k not in ("name", "model.name"), k))  # another network said first
    if changed:
        shown = ", ".join(f"{k} {stored[k]!r} → {asked[k]!r}" for k in changed[:4])
        more = ", …" if len(changed) > 4 else ""
        raise NephrosegInputError(
            stored_path,
            f"this run trained with another recipe ({shown}{more}); resume needs the same "
            "(train.epochs may grow): train into a new --out",
        )


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def postprocess_choice(
    plain: list, processed: list, decide: bool, fixed: str
) -> tuple[dict[str, float], str]:
    """Validation metrics and the post-processing choice from per-case scores without (``plain``)
    and with it (``processed``): when ``decide``, 'components' only if it raises the mean composite
    Dice (nnU-Net's rule), else the recipe's ``fixed`` choice. Shared by the 2.5D and 3D trainers."""
    by_choice = {"none": plain, "components": processed}
    composite = {
        name: float(np.mean([s.composite_dice for s in scores])) for name, scores in by_choice.items()
    }
    if decide:
        choice = max(composite, key=lambda k: (composite[k], k == "none"))
    else:
        choice = fixed if fixed != "auto" else "none"
    scores = by_choice[choice]
    metrics = {
        "val_kidney_tumor_dice": float(np.mean([s.kidney_tumor_dice for s in scores])),
        "val_tumor_dice": float(np.mean([s.tumor_dice for s in scores])),
        "val_composite_dice": composite[choice],
    }
    return metrics, choice


@dataclass(eq=False)
class Session:
    """What the loop changes as it runs; saved whole in every checkpoint."""

    model: SegmentationModel
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    seed: int
    epoch: int = 0
    step: int = 0
    best_score: float = -1.0  # the raw validation composite Dice of the best checkpoint
    best_epoch: int = -1
    smoothed_score: float | None = None  # moving average of the validation score that selects
    smoothed_epoch: int = -1  # the epoch of the last validation folded into it
    best_smoothed: float = -1.0
    train_seconds: float = 0.0  # optimization time over all sessions of the run (resumes included)
    averaged: AveragedModel | None = None  # the weight average (train.ema_decay), when kept

    def record_validation(self, row: dict[str, float], spec: TrainSpec) -> bool:
        """Fold this epoch's validation score (``spec.select_on``) into its moving average; True
        when the average peaks here, making this epoch's weights the best checkpoint. With one or
        two validation cases the raw score swings by ±0.15 between epochs, and its maximum picked a
        half-trained early epoch that scored 0.58 on held-out cases where the last scored 0.66
        (docs/benchmarks.md); nnU-Net chooses its checkpoint_best on such an average too.

        The smoothing is per epoch: validating every k epochs weighs the previous average by
        ``val_smoothing ** k``, so the average spans the same epochs however often it is fed."""
        score = row[f"val_{spec.select_on}_dice"]
        previous = self.smoothed_score
        if previous is None:
            self.smoothed_score = score
        else:
            smoothing = spec.val_smoothing ** max(1, self.epoch - self.smoothed_epoch)
            self.smoothed_score = smoothing * previous + (1 - smoothing) * score
        self.smoothed_epoch = self.epoch
        if self.smoothed_score <= self.best_smoothed:
            return False
        self.best_smoothed, self.best_epoch = self.smoothed_score, self.epoch
        self.best_score = row["val_composite_dice"]
        return True

    def evaluated(self) -> SegmentationModel:
        """What validation scores and checkpoints carry: the weight average when one is kept."""
        if self.averaged is None:
            return self.model
        return SegmentationModel(self.averaged.module, self.model.recipe)

    def payload(self, metrics: dict[str, float]) -> dict:
        extra = {}
        if self.averaged is not None:  # the raw weights and the average's step count, to resume
            extra = {
                "train_model_state": self.model.network.state_dict(),
                "average_state": self.averaged.state_dict(),
            }
        return {
            **extra,
            "recipe": self.model.recipe.model_dump(mode="json"),
            "model_state": self.evaluated().network.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "schedule_state": self.schedule.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "seed": self.seed,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "smoothed_score": self.smoothed_score,
            "smoothed_epoch": self.smoothed_epoch,
            "best_smoothed": self.best_smoothed,
            "train_seconds": self.train_seconds,
            "metrics": metrics,
            # Samples draw from their own seeds, but some models draw from the global generator
            # (Mask R-CNN's proposal sampling): a resumed run continues exactly where it stopped.
            "torch_rng_state": torch.get_rng_state(),
        }

    def restore(self, state: dict) -> None:
        self.model.network.load_state_dict(state.get("train_model_state", state["model_state"]))
        if self.averaged is not None and "average_state" in state:
            self.averaged.load_state_dict(state["average_state"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        self.schedule.load_state_dict(state["schedule_state"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best_score, self.best_epoch = float(state["best_score"]), int(state["best_epoch"])
        # Checkpoints from before the moving average: it restarts from the best raw score.
        self.smoothed_score = state.get("smoothed_score", self.best_score if self.best_epoch >= 0 else None)
        # Checkpoints from before per-epoch smoothing were validated every epoch: the one before.
        self.smoothed_epoch = int(state.get("smoothed_epoch", self.epoch - 1))
        self.best_smoothed = float(state.get("best_smoothed", self.best_score))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        if "torch_rng_state" in state:
            torch.set_rng_state(state["torch_rng_state"].cpu())


def check_finite(loss: torch.Tensor, session: Session) -> None:
    """Stop with a clear message instead of training on (and saving) NaN weights."""
    if not torch.isfinite(loss):
        raise NephrosegInputError(
            "train.lr",
            f"training diverged (loss {float(loss.detach())} at step {session.step + 1}): lower the rate",
        )


def finish_step(session: Session, loss: torch.Tensor, losses: list[float], bar: Progress, task) -> None:
    """Bookkeeping after an optimizer step, shared by the 2.5D and 3D loops."""
    session.schedule.step()
    if session.averaged is not None:
        session.averaged.update_parameters(session.model.network)
    session.step += 1
    losses.append(float(loss.detach()))
    total = session.model.recipe.train.epochs
    bar.update(task, advance=1, status=f"epoch {session.epoch + 1}/{total} loss {np.mean(losses):.4f}")


def timed_epoch(session: Session, run_epoch: Callable[[], float]) -> dict:
    """One epoch of training and its log row (loss, step, learning rate, seconds); the seconds add
    to the run's training time."""
    started = time.perf_counter()
    row: dict = {"epoch": session.epoch, "train_loss": run_epoch()}
    row.update(
        step=session.step, lr=session.optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - started
    )
    session.train_seconds += row["seconds"]
    return row


def validation_due(session: Session) -> bool:
    """Every ``train.val_every`` epochs, and after the last."""
    spec = session.model.recipe.train
    return (session.epoch + 1) % spec.val_every == 0 or session.epoch + 1 == spec.epochs


def end_epoch(
    session: Session, row: dict, ctx: DistContext, checkpoints: Path, log: RunLog | None, **extra
) -> None:
    """Close an epoch (2.5D and 3D trainers): rank 0 writes ``last.pt``, ``best.pt`` when this
    epoch's validation made it the best, and the log row; the other ranks wait for it."""
    improved = session.best_epoch == session.epoch
    session.epoch += 1
    if ctx.is_main:
        payload = {**session.payload({k: v for k, v in row.items() if k.startswith("val_")}), **extra}
        if improved:
            save_checkpoint(checkpoints / BEST_NAME, payload)
        save_checkpoint(checkpoints / LAST_NAME, payload)
        log.add(row)  # type: ignore[union-attr]
    barrier(ctx)


def finish_run(
    run_dir: Path, network: torch.nn.Module, session: Session, ctx: DistContext, summary: dict
) -> TrainResult:
    """Every rank's weight digest and rank 0's choice of the best epoch; rank 0 writes ``summary.json``
    (``summary`` with those digests) and every rank returns the same result."""
    digests = weight_checksums(network, ctx)
    session.best_score, session.best_epoch = from_main((session.best_score, session.best_epoch), ctx)
    checkpoints = run_dir / "checkpoints"
    best_path = checkpoints / BEST_NAME if (checkpoints / BEST_NAME).exists() else checkpoints / LAST_NAME
    if ctx.is_main:
        summary = {**summary, "world_size": ctx.world_size, "rank_weight_digests": digests}
        atomic_write_json(run_dir / "summary.json", summary)
    epochs = session.model.recipe.train.epochs
    return TrainResult(run_dir, best_path, session.best_score, session.best_epoch, epochs, session.step)


def run_summary(
    recipe: Recipe,
    network,
    session,
    split: Split,
    seed: int,
    device: torch.device,
    prepare_seconds: float = 0.0,
) -> dict:
    """What ``summary.json`` says of a finished run (2.5D and 3D trainers alike). ``prepare_seconds``:
    reading, resampling and caching the cases in this session (near zero when the cache was reused)."""
    cases = len(split.train) + len(split.val)
    return {
        "recipe": recipe.name,
        "model": recipe.model.name,
        "parameters": parameter_count(network),
        "best_epoch": session.best_epoch,
        "best_val_composite_dice": session.best_score,
        "best_val_smoothed": {recipe.train.select_on: session.best_smoothed},  # what chose it
        "epochs": recipe.train.epochs,
        "steps": session.step,
        "seconds_per_iteration": session.train_seconds / max(1, session.step),
        "train_cases": split.train,
        "val_cases": split.val,
        "test_cases": split.test,
        "seed": seed,
        "device": str(device),
        "prepare_seconds": round(prepare_seconds, 3),
        "prepare_seconds_per_case": round(prepare_seconds / max(1, cases), 3),
    }


def write_run_files(run_dir: Path, recipe: Recipe, split: Split) -> None:
    atomic_write_text(
        run_dir / "recipe.yaml", yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    )
    payload = {"train": split.train, "val": split.val, "test": split.test}
    atomic_write_text(run_dir / "split.json", json.dumps(payload, indent=1))


def run_started(run_dir: Path, ctx: DistContext) -> bool:
    """Whether ``run_dir`` holds a run to resume (a finished one resumes to its end at once), as every
    ``torchrun`` rank saw it before rank 0 writes the first checkpoint of a new one."""
    started = (run_dir / "checkpoints" / LAST_NAME).exists()
    barrier(ctx)
    return started
