"""One variant of ours on the cohort of ``bench/peer_nnunet.py``, without running nnU-Net again.

    python bench/peer_ours_variant.py NAME --steps 1600 --epochs 16 --batch 8 --cases 12 --size 128 \
        [--recipe resunet25d] [--profile quick] [--set KEY=VALUE ...] [--out bench_out/peer_variants]
        [--coarse-steps 200 --profile demo]

The peer bench generates its cohort deterministically from (``--seed``, ``--cases``, ``--size``), so
a variant trained here with the same step budget (``--steps`` split into ``--epochs`` as the bench
splits it, ``--batch``) sees the same cases as the nnU-Net run recorded in docs/benchmarks.md and is
compared with it at equal steps. Trains through the CLI as the bench does (holdout of one validation
case; ``--reuse`` keeps a run trained before), predicts the held-out cases without mirroring and the
bench's KiTS-sized case (timed end to end, peak RSS), scores them with our evaluator and appends
one JSON line to ``OUT/results.jsonl``.

``--coarse-steps N`` makes the variant a cascade as ``make demo`` trains it: a kidney finder
(``--coarse-profile``, default ``demo_coarse``) trained for N of the ``--steps`` and their share of
the epochs, the refine model (``--profile``) for the rest, so the two together take the bench's
number of optimizer steps (``train_ours_cascade``, as the bench trains them); both predictions then
run through ``--coarse-model``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_nnunet import (
    HELD_OUT,
    REPO,
    build_cohort,
    finder_options,
    kits_sized_case,
    run,
    score,
    train_ours_cascade,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    held_out = f"training cases (the bench holds out {HELD_OUT})"
    parser.add_argument("--cases", type=int, default=12, help=held_out)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0, help="the cohort's seed (the bench's --seed)")
    parser.add_argument(
        "--train-seed", type=int, default=0, help="ours' --seed: validation case, weights, sampling"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipe", default="resunet25d")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=REPO / "bench_out" / "peer_variants")
    parser.add_argument("--reuse", action="store_true", help="keep OUT/run_NAME when it was trained")
    parser.add_argument("--coarse-steps", type=int, default=0, help="of --steps, for a kidney finder")
    parser.add_argument("--coarse-profile", default="demo_coarse")
    args = parser.parse_args()
    if not 0 <= args.coarse_steps < args.steps:
        parser.error("--coarse-steps must lie in [0, --steps)")

    train_dir, test_dir = build_cohort(args.out, args.cases, HELD_OUT, args.size, args.seed)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    ours = str(Path(sys.executable).parent / "nephroseg")

    train_cmd = [ours, "train", "--data", str(train_dir), "--recipe", args.recipe]
    train_cmd += ["--seed", str(args.train_seed), "--no-progress"]
    folder, target = args.out / f"run_{args.name}", args.out / f"pred_{args.name}"
    trained = train_ours_cascade(
        train_cmd,
        folder,
        args.steps,
        args.epochs,
        profile=args.profile,
        batch=args.batch,
        overrides=args.overrides,
        env=env,
        coarse_steps=args.coarse_steps,
        coarse_profile=args.coarse_profile,
        reuse=args.reuse,
    )
    cascade = finder_options(folder, args.coarse_steps)
    shutil.rmtree(target, ignore_errors=True)
    cmd = [ours, "predict", "-i", str(test_dir), "-o", str(target), "-m", str(folder), "--no-progress"]
    predicted = run(
        [*cmd, *cascade, "--threads", str(args.threads), "--no-tta"], env, f"ours predict {args.name}"
    )
    scores = score(target, test_dir)
    big = kits_sized_case(args.out, args.seed)
    cmd = [ours, "predict", "-i", str(big), "-o", str(target / "kits_sized"), "-m", str(folder)]
    cmd += [*cascade, "--overwrite", "--no-progress", "--no-tta", "--threads", str(args.threads)]
    big_run = run(cmd, env, f"ours predict KiTS-sized {args.name}")
    big_scores = score(target / "kits_sized", big)
    line = {
        "name": args.name,
        "steps": args.steps,
        "batch": args.batch,
        "cases": args.cases,
        "size": args.size,
        "seed": args.seed,
        "train_seed": args.train_seed,
        "recipe": args.recipe,
        "profile": args.profile,
        "coarse_steps": args.coarse_steps,
        "overrides": args.overrides,
        "composite_dice": round(scores["composite_dice"], 4),
        "kidney_tumor_dice": round(scores["kidney_tumor_dice"], 4),
        "tumor_dice": round(scores["tumor_dice"], 4),
        "train_seconds": round(trained["s"]),
        "predict_seconds_per_case": round(predicted["s"] / HELD_OUT, 2),
        "kits_sized_seconds": round(big_run["s"], 1),
        "kits_sized_rss_mb": round(big_run["rss_mb"]),
        "kits_sized_composite_dice": round(big_scores["composite_dice"], 4),
    }
    print(json.dumps(line))
    with open(args.out / "results.jsonl", "a", encoding="utf-8") as results:
        results.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
