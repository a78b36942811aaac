"""How a run trained on procedural phantoms does on CT painted onto the real KiTS19 label masks.

    OMP_NUM_THREADS=1 python bench/painted_transfer.py RUN [--coarse RUN] [--tta | --no-tta]
        [--painted DIR] [--masks ../shared/kits19]

Paints (once; cases already there are kept) every mask folder of ``--masks`` into ``--painted``
(default bench_out/painted, the same cohort ``bench/zoo.py`` paints), predicts them with ``RUN``,
scores them (``--coarse``: with that run as the coarse stage of a cascade; ``--tta``: mirrored,
by default as the run's recipe says) and prints the mean and per-case KiTS Dice with each case's
radiographic tumor size.
Skips cleanly when the masks are absent (they are not part of a clone).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--painted", type=Path, default=REPO / "bench_out" / "painted")
    parser.add_argument("--masks", type=Path, default=REPO.parent / "shared" / "kits19")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--coarse", type=Path, help="coarse run of a cascade (RUN: its kidney-crop model)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, help="default: the recipe's")
    args = parser.parse_args()
    if not args.masks.is_dir():
        raise SystemExit(f"skipped: no KiTS19 masks at {args.masks}")

    from nephroseg.inference import predict
    from nephroseg.metrics import evaluate_folders
    from nephroseg.synth import SynthConfig, synthesize_cohort

    n_cases = len(list(args.masks.glob("case_*")))
    synthesize_cohort(args.painted, n_cases, args.seed, SynthConfig(), from_masks=args.masks)
    suffix = {None: "", True: "_tta", False: "_notta"}[args.tta]
    predictions = args.painted.parent / f"{args.painted.name}_pred_{args.run.name}{suffix}"
    coarse = [args.coarse] if args.coarse else None
    predict(
        args.painted,
        predictions,
        [args.run],
        overwrite=True,
        progress=True,
        coarse_models=coarse,
        tta=args.tta,
    )
    scores = evaluate_folders(predictions, args.painted)
    records = json.loads((args.masks / "kits.json").read_text())
    sizes = {c["case_id"]: c.get("radiographic_size") for c in records}
    print("case | kidney+tumor | tumor | radiographic size (cm)")
    for case_id, metrics in scores.per_case.items():
        kidney, tumor = metrics["kidney_tumor_dice"], metrics["tumor_dice"]
        print(f"{case_id} | {kidney:.3f} | {tumor:.3f} | {sizes.get(case_id)}")
    mean = scores.mean
    print(
        f"mean over {len(scores.per_case)}: composite {mean['composite_dice']:.3f}, "
        f"kidney+tumor {mean['kidney_tumor_dice']:.3f}, tumor {mean['tumor_dice']:.3f}"
    )


if __name__ == "__main__":
    main()
