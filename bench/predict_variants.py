"""Prediction-time variants of one trained 2.5D model or cascade, scored on one labelled folder.

    python bench/predict_variants.py --data bench_out/held24 --model demo_out/run \
        --coarse-model demo_out/run_coarse --scales 1 --scales 1,1.2 --scales 0.85,1,1.2

Each ``--scales`` is one variant: the refine stage (or the single model) sees every slice at each of
these zooms and averages the probabilities (``make_segmenter(scales=...)``), mirrored when the recipe says
so. The cases are read once; every variant segments them in memory and is scored by the KiTS
metrics; one line per variant (mean composite, kidney+tumor, tumor Dice and seconds) is printed and
appended to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--coarse-model", type=Path, default=None)
    parser.add_argument("--scales", action="append", required=True, help="comma-separated zooms")
    parser.add_argument("--out", type=Path, default=Path("bench_out/predict_variants.jsonl"))
    args = parser.parse_args()

    from nephroseg.inference.predict import load_models
    from nephroseg.inference.sliding import make_segmenter
    from nephroseg.io import labelled_cases, load_case
    from nephroseg.metrics.overlap import kits_scores

    device = torch.device("cpu")
    models = load_models([args.model], device)
    coarse = load_models([args.coarse_model], device) if args.coarse_model else None
    cases = [load_case(case) for case in labelled_cases(args.data)]
    for text in args.scales:
        scales = tuple(float(z) for z in text.split(","))
        segmenter = make_segmenter(models, device, coarse_models=coarse, scales=scales)
        started = time.perf_counter()
        scores = []
        for image, label in cases:
            labels = segmenter.segment(image.array, image.spacing)
            scores.append(kits_scores(labels, label.array))
        seconds = time.perf_counter() - started
        row = {
            "model": str(args.model),
            "data": str(args.data),
            "scales": scales,
            "composite": float(np.mean([s.composite_dice for s in scores])),
            "kidney_tumor": float(np.mean([s.kidney_tumor_dice for s in scores])),
            "tumor": float(np.mean([s.tumor_dice for s in scores])),
            "seconds": round(seconds, 1),
        }
        print(json.dumps(row), flush=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
