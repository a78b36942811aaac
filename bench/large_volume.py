"""Peak memory and time of ``nephroseg predict`` on long KiTS-sized volumes (512×512, Z slices).

    python bench/large_volume.py [--slices 200 1000] [--model RUN] [--out bench_out/large]

Writes each volume as KiTS ships it (``imaging.nii.gz`` would take minutes to compress at 1000
slices, so the uncompressed ``.nii``; same I-P-L axes, int16), predicts it in a child process
with ``--max-memory 4GB`` and reports the child's peak resident memory next to the guard's
estimate. Without ``--model`` the quick profile's network (2.4 mm, width 0.25) is used untrained:
memory and time do not depend on the weights (accuracy is not measured here).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from nephroseg.io import write_array
from nephroseg.synth.phantom import kits_affine


def write_long_volume(path: Path, slices: int, seed: int = 0) -> Path:
    """A body-like ellipse of soft tissue with fat, kidneys-sized blobs and noise, slice by slice."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:512, :512]
    body = ((yy - 256) / 200.0) ** 2 + ((xx - 256) / 240.0) ** 2 < 1
    volume = np.full((slices, 512, 512), -1000, dtype=np.int16)
    for z in range(slices):
        plane = np.where(body, 40, -1000).astype(np.int16)
        plane += rng.normal(0, 15, size=plane.shape).astype(np.int16) * body
        volume[z] = plane
    return write_array(volume, kits_affine((1.0, 0.78, 0.78)), path, np.int16)


def untrained_checkpoint(path: Path) -> Path:
    import torch

    from nephroseg.models import build_model
    from nephroseg.recipe import load_recipe
    from nephroseg.training.checkpoint import save_checkpoint

    recipe = load_recipe("resunet25d", profile="quick")
    torch.manual_seed(0)
    network = build_model(recipe.model)
    return save_checkpoint(
        path, {"recipe": recipe.model_dump(mode="json"), "model_state": network.state_dict()}
    )


def estimate(source: Path, model: Path, batch_size: int) -> int:
    import torch

    from nephroseg.inference.guards import activations_per_pixel, peak_bytes
    from nephroseg.inference.predict import load_models
    from nephroseg.io import read_geometry
    from nephroseg.io.volume import canonical_shape_and_spacing

    (member,) = load_models([model], torch.device("cpu"))
    spec = member.recipe
    shape, spacing = canonical_shape_and_spacing(*read_geometry(source))
    activations = activations_per_pixel(member.network, spec.model.in_slices, member.divisor)
    row = (
        spec.preprocess.spacing_mm,
        member.divisor,
        spec.model.in_slices,
        spec.model.num_classes,
        activations,
    )
    return peak_bytes(shape, spacing, [row], batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench_out/large"))
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model or untrained_checkpoint(args.out / "untrained_demo.pt")
    nephroseg = Path(sys.executable).with_name("nephroseg")
    print("| slices | voxels | estimate (guard) | measured peak RSS | predict wall s |")
    print("|---:|---:|---:|---:|---:|")
    for slices in args.slices:
        source = write_long_volume(args.out / f"long_{slices}.nii", slices)
        target = args.out / f"long_{slices}_labels.nii.gz"
        command = [str(nephroseg), "predict", "-i", str(source), "-o", str(target), "-m", str(model)]
        command += [
            "--overwrite",
            "--no-progress",
            "--max-memory",
            "4GB",
            "--batch-size",
            str(args.batch_size),
        ]
        started = time.perf_counter()
        # A fresh child per size: RUSAGE_CHILDREN reports the largest child so far, so sizes go up.
        subprocess.run(command, check=True, env={**os.environ})
        wall = time.perf_counter() - started
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        guess = estimate(source, model, args.batch_size)
        print(
            f"| {slices} | {slices * 512 * 512:,} | {guess / 1024**3:.2f} GB | {peak_kb / 1024**2:.2f} GB "
            f"| {wall:.0f} |",
            flush=True,
        )
        source.unlink()


if __name__ == "__main__":
    main()
