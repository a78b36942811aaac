"""Where a training step of the demo's refine stage spends its time: batch assembly, forward, loss,
backward, optimizer, per loss, as milliseconds per step in one run.

    python bench/train_step_parts.py [--data DIR] [--threads N] [--steps S] [--workers W]

``--data``: a KiTS-layout folder with labels (default: 8 cases generated as ``make demo`` generates
them, into a temporary folder). The losses alternate every step, so load from other jobs hits both.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from nephroseg.data import SliceDataset, SliceSampler
from nephroseg.demo import DEMO_PROFILE, DEMO_RECIPE, DemoSettings
from nephroseg.io import find_cases
from nephroseg.losses import build_loss
from nephroseg.models import build_model
from nephroseg.progress import progress_bar
from nephroseg.recipe import load_recipe
from nephroseg.synth import synthesize_cohort
from nephroseg.training.trainer import _prepare_all, build_optimizer

PARTS = ("batch", "forward", "loss", "backward", "optimizer")
LOSSES = ("ce_lovasz", "dice_ce")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_recipe(DEMO_RECIPE, profile=DEMO_PROFILE)
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:
            data = Path(scratch) / "data"
            demo = DemoSettings()
            synthesize_cohort(data, 8, demo.seed, demo.synth_config(), progress=False)
        with progress_bar(False) as bar:  # the trainer's own preparation: one crop per kidney
            cases = find_cases(data, require_labels=True)
            crops = _prepare_all(cases, recipe.preprocess, Path(scratch) / "cache", bar, "prepare")
        spec = recipe.train
        dataset = SliceDataset(crops, recipe.preprocess, recipe.augment, recipe.model.in_slices)
        loader = DataLoader(
            dataset,
            batch_size=spec.batch_size,
            sampler=SliceSampler(crops, spec, 0),
            num_workers=args.workers,
            persistent_workers=args.workers > 0,
        )
        torch.manual_seed(0)
        network = build_model(recipe.model)
        optimizer = build_optimizer(network.parameters(), spec)
        loss_fns = {name: build_loss(spec.model_copy(update={"loss": name}), 3) for name in LOSSES}
        times = {name: {part: [] for part in PARTS} for name in LOSSES}
        batches = iter(loader)
        for step in range(args.steps + 2):
            name = LOSSES[step % 2]
            marks = [time.perf_counter()]
            images, labels = next(batches)
            marks.append(time.perf_counter())
            optimizer.zero_grad(set_to_none=True)
            logits = network(images)
            marks.append(time.perf_counter())
            loss = loss_fns[name](logits, labels)
            marks.append(time.perf_counter())
            loss.backward()
            marks.append(time.perf_counter())
            optimizer.step()
            marks.append(time.perf_counter())
            if step >= 2:  # the first two steps warm up allocators and the loader
                for part, start, end in zip(PARTS, marks[:-1], marks[1:], strict=True):
                    times[name][part].append(end - start)
    size = recipe.preprocess.size
    print(f"threads={args.threads} workers={args.workers} batch={spec.batch_size} size={size}")
    for name in LOSSES:
        parts = {part: 1000 * float(np.mean(times[name][part])) for part in PARTS}
        cells = " ".join(f"{part}={ms:.1f}" for part, ms in parts.items())
        print(f"{name}: {cells} step={sum(parts.values()):.1f} ms")


if __name__ == "__main__":
    main()
