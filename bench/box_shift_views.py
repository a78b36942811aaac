"""The 2.5D cascade's refine stage averaged over shifted kidney boxes, scored on one labelled folder.

    OMP_NUM_THREADS=1 python bench/box_shift_views.py --data bench_out/patch/test_s0_from80/n24 \
        --model demo_out/run --coarse-model demo_out/run_coarse --views centre --views diag8

A prediction-time experiment (docs/benchmarks.md, fifteenth demo round): boxes a few pixels apart
changed the refine model's tumor by up to 0.2 Dice in a case, so each kidney box is also segmented
shifted in-plane by the view's offsets (mm) and the probabilities are averaged before the argmax.
Overlapping boxes are averaged too (the package takes the higher label there); the ``centre`` view
gives the package's labels on the demo's cases without ``train.tumor_across_slices``.
``--z-weight W`` (repeatable) also averages each slice's probabilities with its two neighbours' at
weight W each before the argmax; ``--z-kernel A,B,C,B,A`` (repeatable) with any odd symmetric kernel
over the neighbouring slices instead (normalized to sum 1, e.g. five slices); ``--z-sigma-mm S``
(repeatable) with a Gaussian of S mm along z, as many slices as two sigmas reach. With ``--tumor-only``
the foreground stays each slice's own and only tumor against kidney is decided on the average, which
at W = 1/3 is the package's ``tumor_across_slices`` (docs/benchmarks.md, sixteenth demo round). One
JSON line per view set and kernel is printed. ``--inplane-mm S`` also smooths that margin in-plane by
a Gaussian of S mm (seventeenth round: no gain). ``--thin-tumor-slices N`` (repeatable) also scores
each kernel's labels with the tumor components on fewer than N slices called kidney.
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


def view_probabilities(cascade, hu: np.ndarray, spacing, offsets) -> tuple[np.ndarray, np.ndarray]:
    """The refine stage's probabilities (C, Z, H, W) averaged over the views, and where a box covers."""
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
    return total, covered


def gaussian_kernel(sigma_slices: float) -> tuple[float, ...]:
    """A Gaussian of ``sigma_slices`` over the slices two sigmas reach, normalized to sum 1."""
    reach = int(np.floor(2.0 * sigma_slices))
    weights = np.exp(-0.5 * (np.arange(-reach, reach + 1) / sigma_slices) ** 2)
    return tuple(weights / weights.sum())


def without_thin_tumors(labels: np.ndarray, min_slices: int) -> np.ndarray:
    """``labels`` with every tumor component (26-connected) that spans fewer than ``min_slices``
    slices relabelled as kidney."""
    from scipy.ndimage import find_objects
    from scipy.ndimage import label as connected

    components, _ = connected(labels == 2, structure=np.ones((3, 3, 3), bool))
    boxes = find_objects(components)
    thin = [index for index, box in enumerate(boxes, start=1) if box[0].stop - box[0].start < min_slices]
    return np.where(np.isin(components, thin), np.uint8(1), labels) if thin else labels


def labels_from(
    cascade,
    total: np.ndarray,
    covered: np.ndarray,
    z_kernel: tuple[float, ...] = (),
    tumor_only: bool = False,
    inplane_sigma_px: tuple[float, float] | None = None,
) -> np.ndarray:
    """The cascade's labels; a ``z_kernel`` (weights over the slice and its neighbours, summing to 1)
    first averages each slice's probabilities with its neighbours' (slices outside a box hold zeros,
    which move no argmax).
    ``tumor_only``: foreground from the slice's own probabilities, tumor against kidney from the
    averaged ones, their margin first smoothed in-plane by a Gaussian of ``inplane_sigma_px``."""
    from scipy.ndimage import convolve1d, gaussian_filter

    from nephroseg.inference.postprocess import postprocess_labels

    labels = total.argmax(0)
    if len(z_kernel) > 1:
        smoothed = convolve1d(total, list(z_kernel), axis=1, mode="constant")
        if tumor_only:
            margin = smoothed[2] - smoothed[1]
            if inplane_sigma_px:
                margin = gaussian_filter(margin, (0.0, *inplane_sigma_px))
            labels = np.where(labels > 0, np.where(margin > 0, 2, 1), 0)
        else:
            labels = smoothed.argmax(0)
    labels = np.where(covered, labels, 0).astype(np.uint8)
    return postprocess_labels(labels) if cascade.postprocess else labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--coarse-model", type=Path, required=True)
    parser.add_argument("--views", action="append", choices=sorted(VIEWS), required=True)
    parser.add_argument(
        "--z-weight", type=float, action="append", help="neighbour-slice weights to try (default 0)"
    )
    parser.add_argument(
        "--z-kernel", action="append", default=[], help="slice kernels to try, e.g. 1,2,3,2,1 (normalized)"
    )
    parser.add_argument(
        "--z-sigma-mm", type=float, action="append", default=[], help="Gaussian slice kernels to try (mm)"
    )
    parser.add_argument(
        "--thin-tumor-slices",
        type=int,
        action="append",
        default=[],
        help="also relabel as kidney the tumor components on fewer slices than this (repeatable)",
    )
    parser.add_argument("--tumor-only", action="store_true", help="average only tumor against kidney")
    parser.add_argument(
        "--inplane-mm", type=float, default=0.0, help="--tumor-only: margin smoothed in-plane (sigma)"
    )
    args = parser.parse_args()

    from nephroseg.inference.predict import load_models
    from nephroseg.inference.sliding import make_segmenter
    from nephroseg.io import labelled_cases, load_case
    from nephroseg.metrics.overlap import kits_scores

    device = torch.device("cpu")
    cascade = make_segmenter(
        load_models([args.model], device), device, coarse_models=load_models([args.coarse_model], device)
    )
    cases = [load_case(case) for case in labelled_cases(args.data)]
    # Each kernel as a function of the case's slice spacing (mm).
    kernels = {f"w={w}": lambda dz, w=w: (w, 1.0 - 2.0 * w, w) if w else () for w in args.z_weight or []}
    for text in args.z_kernel:
        weights = np.array([float(v) for v in text.split(",")])
        if len(weights) % 2 == 0 or not np.allclose(weights, weights[::-1]):
            parser.error(f"--z-kernel {text}: needs an odd number of symmetric weights")
        kernels[text] = lambda dz, weights=weights: tuple(weights / weights.sum())
    for sigma_mm in args.z_sigma_mm:
        kernels[f"sigma={sigma_mm}mm"] = lambda dz, s=sigma_mm: gaussian_kernel(s / dz)
    kernels = kernels or {"w=0.0": lambda dz: ()}
    thin = [0, *args.thin_tumor_slices]
    for name in args.views:
        started = time.perf_counter()
        scores: dict[tuple[str, int], list] = {(k, n): [] for k in kernels for n in thin}
        for image, label in cases:
            total, covered = view_probabilities(cascade, image.array, image.spacing, VIEWS[name])
            sigma = tuple(args.inplane_mm / s for s in image.spacing[1:]) if args.inplane_mm else None
            for key, kernel in kernels.items():
                labels = labels_from(
                    cascade, total, covered, kernel(image.spacing[0]), args.tumor_only, sigma
                )
                for n in thin:
                    kept = without_thin_tumors(labels, n) if n else labels
                    scores[key, n].append(kits_scores(kept, label.array))
        seconds = round(time.perf_counter() - started, 1)
        for (key, n), rows in scores.items():
            row = {
                "model": str(args.model),
                "views": name,
                "z_kernel": key,
                "tumor_only": args.tumor_only,
                "inplane_mm": args.inplane_mm,
                "thin_tumor_slices": n,
                "composite": round(float(np.mean([s.composite_dice for s in rows])), 4),
                "kidney_tumor": round(float(np.mean([s.kidney_tumor_dice for s in rows])), 4),
                "tumor": round(float(np.mean([s.tumor_dice for s in rows])), 4),
                "seconds": seconds,
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
