"""The 2.5D cascade's refine stage averaged over shifted kidney boxes, scored on one labelled folder.

    OMP_NUM_THREADS=1 python bench/box_shift_views.py --data bench_out/patch/test_s0_from80/n24 \
        --model demo_out/run --coarse-model demo_out/run_coarse --views centre --views diag8

A prediction-time experiment (docs/benchmarks.md, fifteenth demo round): boxes a few pixels apart
changed the refine model's tumor by up to 0.2 Dice in a case, so each kidney box is also segmented
shifted in-plane by the view's offsets (mm) and the probabilities are averaged before the argmax.
Overlapping boxes are averaged too (the package takes the higher label there); the ``centre`` view
gives the package's labels on the demo's cases. One JSON line per view set is printed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

VIEWS = {  # in-plane offsets (y, x) in mm
    "centre": [(0, 0)],
    "diag8": [(0, 0), (8, 8), (-8, -8)],
    "cross8": [(0, 0), (8, 0), (-8, 0), (0, 8), (0, -8)],
}


def shifted(box: tuple[slice, ...], offset_mm: tuple[float, float], spacing, shape) -> tuple[slice, ...]:
    """``box`` moved in-plane by ``offset_mm``, kept inside the volume at its own width."""
    out = [box[0]]
    for axis, offset in zip((1, 2), offset_mm, strict=True):
        width = box[axis].stop - box[axis].start
        low = min(max(0, box[axis].start + round(offset / spacing[axis])), shape[axis] - width)
        out.append(slice(low, low + width))
    return tuple(out)


def segment(cascade, hu: np.ndarray, spacing, offsets) -> np.ndarray:
    from nephroseg.inference.postprocess import postprocess_labels

    total = np.zeros((cascade.fine.num_classes, *hu.shape), np.float32)
    covered = np.zeros(hu.shape, bool)
    weight = 1.0 / len(offsets)  # the mean over the views
    for box in cascade.boxes(hu, spacing):
        for offset in offsets:
            view = shifted(box, offset, spacing, hu.shape)
            for start, probs in cascade.fine.probabilities(np.asarray(hu[view]), spacing):
                z = view[0].start + start
                total[:, z : z + len(probs), view[1], view[2]] += weight * probs.permute(1, 0, 2, 3).numpy()
            covered[view] = True
    labels = np.where(covered, total.argmax(0), 0).astype(np.uint8)
    return postprocess_labels(labels) if cascade.postprocess else labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--coarse-model", type=Path, required=True)
    parser.add_argument("--views", action="append", choices=sorted(VIEWS), required=True)
    args = parser.parse_args()

    from nephroseg.inference.predict import load_models
    from nephroseg.inference.sliding import make_segmenter
    from nephroseg.io import find_cases, load_case
    from nephroseg.metrics.overlap import kits_scores

    device = torch.device("cpu")
    cascade = make_segmenter(
        load_models([args.model], device), device, coarse_models=load_models([args.coarse_model], device)
    )
    cases = [load_case(case) for case in find_cases(args.data, require_labels=True)]
    for name in args.views:
        started = time.perf_counter()
        scores = [
            kits_scores(segment(cascade, image.array, image.spacing, VIEWS[name]), label.array)
            for image, label in cases
        ]
        row = {
            "model": str(args.model),
            "views": name,
            "composite": round(float(np.mean([s.composite_dice for s in scores])), 4),
            "kidney_tumor": round(float(np.mean([s.kidney_tumor_dice for s in scores])), 4),
            "tumor": round(float(np.mean([s.tumor_dice for s in scores])), 4),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
