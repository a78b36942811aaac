"""Where a training step of the demo's refine stage spends its time: batch assembly, forward, loss,
backward, optimizer, per variant, as milliseconds per step in one run.

    python bench/train_step_parts.py [--data DIR] [--threads N] [--steps S] [--workers W]
        [--variant LOSS[:CROP[:BATCH[:TUMOR,KIDNEY]]] ...]

``--data``: a KiTS-layout folder with labels (default: 8 cases generated as ``make demo`` generates
them, into a temporary folder). A variant is a loss with, optionally, a training patch size
(``train.crop_size``), a batch size and the shares of tumor and kidney slices per batch
(``train.tumor_slice_fraction``, ``train.kidney_slice_fraction``, e.g. ``ce_lovasz:::0.7,0.25``);
an empty field keeps the profile's value. The default compares the two losses at the demo's size and
batch. The variants alternate every step, so load from other jobs hits all of them.
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
from nephroseg.io import labelled_cases
from nephroseg.losses import build_loss
from nephroseg.models import build_model
from nephroseg.progress import progress_bar
from nephroseg.recipe import load_recipe
from nephroseg.synth import synthesize_cohort
from nephroseg.training.trainer import _prepare_all, build_optimizer

PARTS = ("batch", "forward", "loss", "backward", "optimizer")
DEFAULT_VARIANTS = ("ce_lovasz", "dice_ce")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--variant", action="append", help="LOSS[:CROP[:BATCH[:TUMOR,KIDNEY]]], repeatable")
    args = parser.parse_args()
    variants = args.variant or list(DEFAULT_VARIANTS)
    torch.set_num_threads(args.threads)
    recipe = load_recipe(DEMO_RECIPE, profile=DEMO_PROFILE)
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:
            data = Path(scratch) / "data"
            demo = DemoSettings()
            synthesize_cohort(data, 8, demo.seed, demo.synth_config(), progress=False)
        with progress_bar(False) as bar:  # the trainer's own preparation: one crop per kidney
            cases = labelled_cases(data)
            crops = _prepare_all(cases, recipe.preprocess, Path(scratch) / "cache", bar, "prepare")
        spec = recipe.train
        loaders, loss_fns = {}, {}
        for variant in variants:
            loss, crop, batch, shares = [*variant.split(":"), "", "", ""][:4]
            crop_size, batch_size = int(crop or recipe.preprocess.size), int(batch or spec.batch_size)
            update = {"loss": loss, "batch_size": batch_size}
            if shares:
                tumor, kidney = (float(share) for share in shares.split(","))
                update |= {"tumor_slice_fraction": tumor, "kidney_slice_fraction": kidney}
            dataset = SliceDataset(
                crops, recipe.preprocess, recipe.augment, recipe.model.in_slices, size=crop_size
            )
            variant_spec = spec.model_copy(update=update)
            loaders[variant] = iter(
                DataLoader(
                    dataset,
                    batch_size=batch_size,
                    sampler=SliceSampler(crops, variant_spec, 0),
                    num_workers=args.workers,
                    persistent_workers=args.workers > 0,
                )
            )
            loss_fns[variant] = build_loss(variant_spec, 3)
        torch.manual_seed(0)
        network = build_model(recipe.model)
        optimizer = build_optimizer(network.parameters(), spec)
        times = {name: {part: [] for part in PARTS} for name in variants}
        for step in range(len(variants) * (args.steps + 1)):
            name = variants[step % len(variants)]
            marks = [time.perf_counter()]
            images, labels = next(loaders[name])
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
            if step >= len(variants):  # the first step of each warms up allocators and the loader
                for part, start, end in zip(PARTS, marks[:-1], marks[1:], strict=True):
                    times[name][part].append(end - start)
    size = recipe.preprocess.size
    print(f"threads={args.threads} workers={args.workers} batch={spec.batch_size} size={size}")
    for name in variants:
        parts = {part: 1000 * float(np.mean(times[name][part])) for part in PARTS}
        cells = " ".join(f"{part}={ms:.1f}" for part, ms in parts.items())
        print(f"{name}: {cells} step={sum(parts.values()):.1f} ms")


if __name__ == "__main__":
    main()
