"""One variant of the demo, for the tuning log in docs/benchmarks.md: the demo's cohort and flow with
recipe overrides, a different cohort seed or a different number of training cases.

    OMP_NUM_THREADS=1 python bench/demo_variant.py NAME [seed=S] [ntrain=N] [test_start=T] [ntest=M]
        [profile=P] [coarse=RUN] [train_seed=R] [key=value ...]

Generates (once, reused by later variants) ``N`` training cases from seed ``S`` and ``M`` (default
6, as the demo) held-out cases from seed ``S + 1`` numbered from ``T`` (default ``N``), as
``nephroseg demo`` does (case i is generated from (seed, i), so fix ``T`` to compare training-set
sizes on the same cases); trains ``resunet25d --profile demo`` with the overrides; predicts and
scores the held-out cases; appends one JSON line to ``OUT/results.jsonl`` (``--out``, default
bench_out/demo_variants). ``profile=P`` starts from the recipe's profile ``P`` instead of ``demo``
(e.g. ``demo_coarse``, the demo cascade's first stage). ``train_seed=R`` trains with seed ``R``
instead of ``S`` on the same cases (another validation split, initialization and sampling).
``coarse=RUN`` predicts with the variant ``RUN`` (``OUT/run_RUN``) as the coarse stage of a
cascade, for a kidney-crop variant.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nephroseg.demo import DEMO_PROFILE, DEMO_RECIPE, DemoSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("overrides", nargs="*", help="seed=S, ntrain=N or recipe key=value overrides")
    parser.add_argument("--out", type=Path, default=Path("bench_out/demo_variants"))
    args = parser.parse_args()

    from nephroseg.inference import predict
    from nephroseg.metrics import evaluate_folders
    from nephroseg.recipe import load_recipe
    from nephroseg.synth import synthesize_cohort
    from nephroseg.training import train

    defaults = DemoSettings()
    seed, n_train, test_start, overrides = defaults.seed, defaults.train_cases, None, []
    n_test, coarse, profile, train_seed = defaults.test_cases, None, DEMO_PROFILE, None
    for item in args.overrides:
        key, _, value = item.partition("=")
        if key == "seed":
            seed = int(value)
        elif key == "ntrain":
            n_train = int(value)
        elif key == "test_start":
            test_start = int(value)
        elif key == "ntest":
            n_test = int(value)
        elif key == "profile":
            profile = value
        elif key == "coarse":
            coarse = args.out / f"run_{value}"
        elif key == "train_seed":
            train_seed = int(value)
        else:
            overrides.append(item)
    test_start = n_train if test_start is None else test_start
    config = defaults.synth_config()
    data = args.out / f"train_s{seed}_n{n_train}"
    test = args.out / f"test_s{seed}_from{test_start}" / f"n{n_test}"
    synthesize_cohort(data, n_train, seed, config, progress=False)
    synthesize_cohort(test, n_test, seed + 1, config, start_index=test_start, progress=False)

    recipe = load_recipe(DEMO_RECIPE, profile=profile, overrides=overrides)
    run = args.out / f"run_{args.name}"
    started = time.perf_counter()
    train_seed = seed if train_seed is None else train_seed
    resume = (run / "checkpoints" / "last.pt").exists()
    train(data, recipe, run, seed=train_seed, resume=resume, progress=False)
    train_seconds = time.perf_counter() - started
    predictions = args.out / f"pred_{args.name}_n{n_test}"
    coarse_models = [coarse] if coarse else None
    predict(test, predictions, [run], overwrite=True, progress=False, coarse_models=coarse_models)
    scores = evaluate_folders(predictions, test).mean
    line = {
        "name": args.name,
        "seed": seed,
        "train_seed": train_seed,
        "train_cases": n_train,
        "test_start": test_start,
        "test_cases": n_test,
        "profile": profile,
        "overrides": overrides,
        "coarse": coarse.name if coarse else None,
        "composite_dice": round(scores["composite_dice"], 4),
        "kidney_tumor_dice": round(scores["kidney_tumor_dice"], 4),
        "tumor_dice": round(scores["tumor_dice"], 4),
        "train_seconds": round(train_seconds),
    }
    print(json.dumps(line))
    with open(args.out / "results.jsonl", "a", encoding="utf-8") as results:
        results.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
