"""A sweep over one recipe field (seed 003 tuned its learning rate this way): one run per value,
same data, split and seed, ranked by best validation composite Dice. Finished runs are reused."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nephroseg.io import atomic_write_text
from nephroseg.recipe import Recipe, parse_overrides
from nephroseg.training.distributed import process_group
from nephroseg.training.session import run_started
from nephroseg.training.trainer import train


@dataclass(frozen=True)
class SweepPoint:
    value: Any
    run_dir: Path
    best_composite_dice: float


def sweep(
    data_dir: str | Path,
    recipe: Recipe,
    out_dir: str | Path,
    key: str,
    values: list[str],
    *,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> list[SweepPoint]:
    """``key`` is a dotted recipe field (``train.lr``); ``values`` are parsed as YAML scalars."""
    out_dir = Path(out_dir)
    points = []
    with process_group(device) as (ctx, _):  # under torchrun: every run trained by all ranks together
        for raw in values:
            overrides = parse_overrides([f"{key}={raw}"])
            run_recipe = recipe.with_overrides(overrides, f"--set {key}={raw}")
            run_dir = out_dir / f"{key.replace('.', '_')}={raw}"
            resume = run_started(run_dir, ctx)
            result = train(
                data_dir, run_recipe, run_dir, seed=seed, resume=resume, device=device, progress=progress
            )
            value = overrides
            for part in key.split("."):
                value = value[part]
            points.append(SweepPoint(value, run_dir, result.best_composite_dice))
        if ctx.is_main:
            _write_table(out_dir / "sweep.csv", key, points)
    return points


def _write_table(path: Path, key: str, points: list[SweepPoint]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([key, "best_val_composite_dice", "run"])
    for point in sorted(points, key=lambda p: -p.best_composite_dice):
        writer.writerow([point.value, f"{point.best_composite_dice:.6f}", point.run_dir.name])
    atomic_write_text(path, buffer.getvalue())
