"""Every seed recipe side by side: same cohort, same CPU time budget, same held-out cases.

    python bench/zoo.py --quick            # generated cohort, ~1 min of training per model (< 20 min)
    python bench/zoo.py                    # painted from ../shared/kits19 masks when present, 480 s per model

Each model trains and predicts in its own child process, so its peak resident memory is its own.
The time budget is met by measuring seconds per iteration first (a 3-step probe) and then training
``budget / seconds_per_iteration`` iterations with the recipe's own schedule.
The table (markdown) is printed and written to ``OUT/zoo.md``; raw numbers to ``OUT/zoo.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_MASKS = REPO.parent / "shared" / "kits19"
ZOO = (
    "maskrcnn",
    "deeplab_attn",
    "unet512",
    "unet256",
    "fcn8s_v1",
    "fcn8s_v2",
    "linknet_resnet18",
    "resunet25d",
)
PROBE_STEPS = 3
EPOCHS = 4  # validation (and best-checkpoint choice) after each quarter of the budget


@dataclass
class ZooRow:
    recipe: str
    model: str
    parameters: int
    iterations: int
    train_seconds: float
    seconds_per_iteration: float
    inference_seconds_per_case: float
    peak_rss_mb: float
    composite_dice: float
    kidney_dice: float
    tumor_dice: float


def build_cohort(out: Path, quick: bool, masks: Path | None, seed: int) -> tuple[Path, Path, str]:
    """Training and held-out folders; masks (when given) are painted, else cases are generated."""
    from nephroseg.synth import SynthConfig, synthesize_cohort

    train_dir, test_dir = out / "cohort" / "train", out / "cohort" / "test"
    if masks is not None:
        painted = out / "cohort" / "painted"
        n_cases = 10 if quick else 30
        folders = synthesize_cohort(painted, n_cases, seed, SynthConfig(), from_masks=masks)
        test_ids = {f.name for f in folders[::5]}  # every fifth case held out
        for folder in folders:
            target = (test_dir if folder.name in test_ids else train_dir) / folder.name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(folder, target)
        return train_dir, test_dir, f"painted on {n_cases} KiTS19 masks ({len(test_ids)} held out)"
    config = SynthConfig(size=160, min_tumors=1, slice_thickness_mm=(2.5, 5.0))
    n_train, n_test = (16, 4) if quick else (40, 10)
    synthesize_cohort(train_dir, n_train, seed, config)
    synthesize_cohort(test_dir, n_test, seed + 1, config, start_index=n_train)
    return train_dir, test_dir, f"generated, 160² in-plane, {n_train} train / {n_test} held out"


def _bench_overrides(iterations_per_epoch: int, epochs: int) -> list[str]:
    return [
        f"train.epochs={epochs}",
        f"train.iterations_per_epoch={iterations_per_epoch}",
        "train.split.kind=holdout",
        "train.split.val_cases=2",
    ]


def _run_one(
    name: str, profile: str, train_dir: str, test_dir: str, out: str, budget_s: float, queue
) -> None:
    """Child process: probe, train within the budget, predict the held-out cases, score them."""
    from nephroseg.inference import predict
    from nephroseg.metrics import evaluate_folders
    from nephroseg.recipe import load_recipe
    from nephroseg.training import train

    work = Path(out) / name
    shutil.rmtree(work, ignore_errors=True)
    probe = load_recipe(name, profile=profile, overrides=_bench_overrides(PROBE_STEPS, 1))
    probe_result = train(train_dir, probe, work / "probe", progress=False, tensorboard=False)
    probe_summary = json.loads((probe_result.run_dir / "summary.json").read_text())
    seconds_per_iteration = probe_summary["seconds_per_iteration"]
    iterations = max(EPOCHS, int(budget_s / seconds_per_iteration))
    recipe = load_recipe(
        name, profile=profile, overrides=_bench_overrides(max(1, iterations // EPOCHS), EPOCHS)
    )
    started = time.perf_counter()
    result = train(
        train_dir, recipe, work / "run", cache_dir=work / "probe" / "cache", progress=False, tensorboard=False
    )
    train_seconds = time.perf_counter() - started
    summary = json.loads((result.run_dir / "summary.json").read_text())
    n_cases = len(list(Path(test_dir).glob("case_*")))
    started = time.perf_counter()
    predict(test_dir, work / "predictions", [result.run_dir], overwrite=True, progress=False)
    inference_seconds = (time.perf_counter() - started) / max(1, n_cases)
    scores = evaluate_folders(work / "predictions", test_dir).mean
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(
        ZooRow(
            recipe=name,
            model=recipe.model.name,
            parameters=summary["parameters"],
            iterations=summary["steps"],
            train_seconds=round(train_seconds, 1),
            seconds_per_iteration=round(summary["seconds_per_iteration"], 3),
            inference_seconds_per_case=round(inference_seconds, 2),
            peak_rss_mb=round(peak_mb),
            composite_dice=round(scores["composite_dice"], 4),
            kidney_dice=round(scores["kidney_tumor_dice"], 4),
            tumor_dice=round(scores["tumor_dice"], 4),
        )
    )


def run_in_child(*args) -> ZooRow:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_run_one, args=(*args, queue))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"{args[0]}: benchmark child failed with exit code {child.exitcode}")
    return queue.get(timeout=5)


def table(rows: list[ZooRow]) -> str:
    header = (
        "| recipe | model | parameters | iterations | s/iter | train s | infer s/case | peak RSS MB "
        "| composite | kidney+tumor | tumor |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r.recipe} | {r.model} | {r.parameters:,} | {r.iterations} | {r.seconds_per_iteration} "
        f"| {r.train_seconds} | {r.inference_seconds_per_case} | {r.peak_rss_mb:.0f} "
        f"| {r.composite_dice:.3f} | {r.kidney_dice:.3f} | {r.tumor_dice:.3f} |\n"
        for r in sorted(rows, key=lambda r: -r.composite_dice)
    )
    return header + body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "bench_out" / "zoo")
    parser.add_argument("--quick", action="store_true", help="generated cohort, 60 s per model")
    parser.add_argument("--budget-s", type=float, default=None, help="training seconds per model")
    parser.add_argument("--recipes", nargs="*", default=list(ZOO))
    parser.add_argument("--profile", default="quick", help="recipe profile that sets CPU-sized models")
    parser.add_argument("--masks", type=Path, default=None, help="KiTS19 label masks to paint")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    masks = args.masks or (SHARED_MASKS if SHARED_MASKS.is_dir() and not args.quick else None)
    budget = args.budget_s or (60.0 if args.quick else 480.0)
    args.out.mkdir(parents=True, exist_ok=True)
    train_dir, test_dir, cohort = build_cohort(args.out, args.quick, masks, args.seed)
    rows, failed = [], []
    finished = args.out / "rows"  # one file per finished model: a rerun resumes after the last
    finished.mkdir(exist_ok=True)
    for name in args.recipes:
        done = finished / f"{name}.json"
        if done.exists():
            rows.append(ZooRow(**json.loads(done.read_text())))
            print(f"[zoo] {name}: finished earlier, composite {rows[-1].composite_dice:.3f}", flush=True)
            continue
        print(f"[zoo] {name}: training for about {budget:.0f} s", flush=True)
        try:
            row = run_in_child(name, args.profile, str(train_dir), str(test_dir), str(args.out), budget)
        except RuntimeError as err:  # one model failing (e.g. out of memory) leaves the others' rows
            print(f"[zoo] {err}", flush=True)
            failed.append(name)
            continue
        done.write_text(json.dumps(asdict(row)))
        rows.append(row)
        print(f"[zoo] {name}: composite {row.composite_dice:.3f}", flush=True)
    text = f"Cohort: {cohort}. Training budget: {budget:.0f} s per model.\n\n{table(rows)}"
    if failed:
        text += f"\nFailed (see the log above): {', '.join(failed)}\n"
    (args.out / "zoo.md").write_text(text)
    (args.out / "zoo.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    print(text)


if __name__ == "__main__":
    main()
