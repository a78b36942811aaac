"""nephroseg against nnU-Net v2 on the same cases, the same machine, in one run.

    python bench/peer_nnunet.py --quick                 # < 25 min on 2 CPU cores
    python bench/peer_nnunet.py --steps 250 --cases 20  # longer
    python bench/peer_nnunet.py --steps 1600 --epochs 16 --batch 8 --cases 12 --size 128 \
        --ours-recipe resunet25d --ours-profile demo --ours-coarse-steps 200  # ours as make demo's cascade

nnU-Net v2 lives in its own virtual environment (``--venv``, created and filled on first use with
``torch==2.14.1 nnunetv2==2.8.1``). Both tools train the same number of optimizer steps on the
same generated cohort (nnU-Net through a fixed-length trainer subclass registered in that
environment), predict the same held-out cases on the CPU with and without mirroring, and every
prediction is scored by nephroseg's evaluator. Each command runs as a child whose wall time and
peak RSS (``/usr/bin/time``-free: the child reports ``ru_maxrss`` itself) are recorded.

A KiTS-sized case (512×512 in-plane; painted on ``../shared/kits19/case_00006``'s 157 slices when
present, else generated) is predicted by both tools for the per-case timing rows; nnU-Net's
3d_fullres there is timed on a fixed number of its sliding-window tiles and extrapolated to its own
tile count, and the table says so. Each whole command on that case runs ``--repeats`` times (3), the
tools in turn, and the table gives each one's median and range: the machine's speed drifts within
minutes, and a single first run also pays for cold files.
With ``--ours-coarse-steps N`` ours is the 2.5D cascade ``make demo`` trains, within the same budget:
a kidney finder for N of the steps, the refine model for the rest.
The last line is ``speedup_vs_nnunet_3d=<x> speedup_vs_nnunet_2d=<x> dice_delta=<ours-theirs>``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_MASKS = REPO.parent / "shared" / "kits19"
DATASET_ID, DATASET_NAME = 220, "KiTS19Synth"
TRAINER = "nnUNetTrainer_benchSteps"
NNUNET_PIN = "nnunetv2==2.8.1"
TRAINER_SOURCE = '''
import os
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainer_benchSteps(nnUNetTrainer):
    """BENCH_EPOCHS epochs of BENCH_STEPS optimizer steps (its poly rate moves once per epoch); the
    bench scores test cases itself. BENCH_BATCH, when set, replaces the 2d plan's batch size."""

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cpu")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(os.environ.get("BENCH_EPOCHS", "1"))
        self.num_iterations_per_epoch = int(os.environ.get("BENCH_STEPS", "20"))
        self.num_val_iterations_per_epoch = 1
        if configuration == "2d" and os.environ.get("BENCH_BATCH"):
            self.configuration_manager.configuration["batch_size"] = int(os.environ["BENCH_BATCH"])

    def perform_actual_validation(self, save_probabilities: bool = False):
        pass
'''
# Runs a command and prints its own peak RSS: resource.getrusage(RUSAGE_CHILDREN) after wait.
MEASURE = (
    "import resource,subprocess,sys,json,time;t=time.perf_counter();"
    "r=subprocess.run(sys.argv[1:]).returncode;"
    "print(json.dumps({'rc':r,'s':time.perf_counter()-t,"
    "'rss_mb':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024}),file=sys.stderr)"
)
# Tile timers run in nnU-Net's environment; each head builds (net, pm, cm) and reads its own
# arguments, the shared tail takes the case's shape, spacing, tiles to time and threads from the
# last four (``time_tiles`` passes them last), counts nnU-Net's tiles and times the network.
_TIMER_TAIL = r"""
shape, spacing = json.loads(sys.argv[-4]), json.loads(sys.argv[-3])
n_tiles = int(sys.argv[-2])
patch, target, order = list(cm.patch_size), list(cm.spacing), pm.transpose_forward
shape, spacing = [shape[i] for i in order], [spacing[i] for i in order]  # plans are transposed
lead = shape[: len(shape) - len(patch)]  # 2d: the slices, each tiled in-plane; 3d: none
tiled = [
    max(int(round(s * sp / t)), ps)
    for s, sp, t, ps in zip(shape[len(lead) :], spacing[len(lead) :], target, patch)
]
new_shape = [*lead, *tiled]
steps = compute_steps_for_sliding_window(tiled, patch, 0.5)
tiles = int(np.prod(lead)) * int(np.prod([len(s) for s in steps]))
x = torch.randn(1, 1, *patch)
with torch.no_grad():
    net(x)
    t = time.perf_counter()
    for _ in range(n_tiles):
        net(x)
    per_tile = (time.perf_counter() - t) / n_tiles
print(json.dumps({"patch": patch, "spacing": target, "resampled_shape": new_shape, "tiles": tiles,
                  "per_tile_s": per_tile}))
"""
_TIMER_HEAD = r"""
import json, sys, time, numpy as np, torch
from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window
torch.set_num_threads(int(sys.argv[-1]))
"""
# The bench's trained 3d_fullres model (argument: its model folder).
TILE_TIMER = (
    _TIMER_HEAD
    + r"""
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False, device=torch.device("cpu"))
p.initialize_from_trained_model_folder(sys.argv[1], use_folds=(0,), checkpoint_name="checkpoint_final.pth")
net, pm, cm = p.network.eval(), p.plans_manager, p.configuration_manager
"""
    + _TIMER_TAIL
)
# An untrained network built from a plan alone (arguments: plans file, dataset.json, configuration), as
# nnUNetPredictor builds it from a trained folder: a tile's cost does not depend on the weights.
PLAN_TILE_TIMER = (
    _TIMER_HEAD
    + r"""
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
pm = PlansManager(sys.argv[1])
cm = pm.get_configuration(sys.argv[3])
heads = pm.get_label_manager(json.load(open(sys.argv[2]))).num_segmentation_heads
net = nnUNetTrainer.build_network_architecture(pm, cm, 1, heads, enable_deep_supervision=False).eval()
"""
    + _TIMER_TAIL
)


def run(cmd: list[str], env: dict | None = None, label: str = "") -> dict:
    """Run ``cmd`` in a child that reports wall seconds and peak RSS; fail loudly on error."""
    print(f"[peer] {label or cmd[0]} …", flush=True)
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *cmd], env=env, capture_output=True, text=True, check=False
    )
    stats = json.loads(out.stderr.strip().splitlines()[-1])
    if stats["rc"] != 0:
        sys.stderr.write(out.stdout[-3000:] + out.stderr[-3000:])
        raise SystemExit(f"[peer] {label}: failed with exit code {stats['rc']}")
    print(f"[peer] {label}: {stats['s']:.1f} s, peak {stats['rss_mb']:.0f} MB", flush=True)
    return stats


def ensure_venv(venv: Path, skip_install: bool = False) -> Path:
    """nnU-Net's own venv; torch is pinned to this machine's 2.14.1 so pip never fetches another."""
    python = venv / "bin" / "python"
    if not skip_install and not (venv / ".installed").exists():
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        done = subprocess.run([*pip, "torch==2.14.1", NNUNET_PIN], check=False)
        if done.returncode != 0:
            raise SystemExit(
                f"[peer] could not install {NNUNET_PIN} with torch==2.14.1 into {venv} (pip exit code "
                f"{done.returncode}; see pip's message above: usually a dependency that cannot be "
                "downloaded without network). Install it by hand and rerun with --skip-install."
            )
        (venv / ".installed").touch()
    if not python.exists():
        raise SystemExit(f"[peer] {python} not found: run once without --skip-install")
    site = subprocess.run(
        [str(python), "-c", "import nnunetv2,os;print(os.path.dirname(nnunetv2.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    variants = Path(site) / "training" / "nnUNetTrainer" / "variants"
    (variants / f"{TRAINER}.py").write_text(TRAINER_SOURCE)
    return venv / "bin"


HELD_OUT = 5  # held-out cases of a full run (2 in --quick)


def split_steps(n_steps: int, epochs: int) -> tuple[int, int]:
    """(epochs, steps per epoch) for ``n_steps`` steps: both tools split a budget the same way."""
    n_epochs = min(epochs, n_steps)
    return n_epochs, max(1, n_steps // n_epochs)


def ours_budget(n_steps: int, epochs: int, batch: int | None, extra: list[str]) -> list[str]:
    """Recipe overrides that train ours for the bench's budget (one validation case; ``batch`` None
    keeps the recipe's), then ``extra``."""
    n_epochs, per_epoch = split_steps(n_steps, epochs)
    return [
        f"train.iterations_per_epoch={per_epoch}",
        f"train.epochs={n_epochs}",
        "train.split.kind=holdout",
        "train.split.val_cases=1",
        *([f"train.batch_size={batch}"] if batch else []),
        *extra,
    ]


def finder_of(run_dir: Path) -> Path:
    """Where a cascade's kidney finder is trained beside its refine model ``run_dir``."""
    return run_dir.with_name(f"{run_dir.name}_coarse")


def finder_options(run_dir: Path, coarse_steps: int) -> list[str]:
    """``predict`` options that put the kidney finder in front of a cascade's refine model (none
    when ``coarse_steps`` is 0: ours was trained as one model)."""
    return ["--coarse-model", str(finder_of(run_dir))] if coarse_steps else []


def train_ours_cascade(
    train_cmd: list[str],
    run_dir: Path,
    n_steps: int,
    epochs: int,
    *,
    profile: str,
    batch: int | None,
    overrides: list[str],
    env: dict,
    coarse_steps: int = 0,
    coarse_profile: str = "demo_coarse",
    reuse: bool = False,
) -> dict:
    """Train ours for ``n_steps`` optimizer steps in ``epochs``; returns the wall seconds and peak RSS.

    ``train_cmd`` is ``nephroseg train`` with its data, recipe and fixed options, but no ``--out``.
    With ``coarse_steps`` the run is the 2.5D cascade ``make demo`` trains: a kidney finder
    (``coarse_profile``, in ``finder_of(run_dir)``) takes that many of the steps and its share of the
    epochs, so the cascade as a whole stays within the bench's budget. ``reuse`` keeps a model whose
    ``summary.json`` exists and counts its optimization time (not its whole command) instead.
    """

    def train_one(folder: Path, folder_profile: str, steps: int, n_epochs: int) -> dict:
        summary = folder / "summary.json"
        if reuse and summary.is_file():
            done = json.loads(summary.read_text())
            return {"s": done["seconds_per_iteration"] * done["steps"], "rss_mb": 0.0}
        shutil.rmtree(folder, ignore_errors=True)
        cmd = [*train_cmd, "--out", str(folder), "--profile", folder_profile]
        cmd += [a for o in ours_budget(steps, n_epochs, batch, overrides) for a in ("--set", o)]
        return run(cmd, env, f"ours train {folder.name} ({steps} steps)")

    coarse_epochs = max(1, round(epochs * coarse_steps / n_steps)) if coarse_steps else 0
    stats = train_one(run_dir, profile, n_steps - coarse_steps, max(1, epochs - coarse_epochs))
    if coarse_steps:
        found = train_one(finder_of(run_dir), coarse_profile, coarse_steps, coarse_epochs)
        stats = {"s": stats["s"] + found["s"], "rss_mb": max(stats["rss_mb"], found["rss_mb"])}
    return stats


def build_cohort(out: Path, n_train: int, n_test: int, size: int, seed: int) -> tuple[Path, Path]:
    from nephroseg.synth import SynthConfig, synthesize_cohort

    config = SynthConfig(size=size, min_tumors=1, slice_thickness_mm=(2.5, 5.0))
    train_dir, test_dir = out / "cohort" / "train", out / "cohort" / "test"
    synthesize_cohort(train_dir, n_train, seed, config, progress=False)
    synthesize_cohort(test_dir, n_test, seed + 1, config, start_index=n_train, progress=False)
    return train_dir, test_dir


def kits_sized_case(out: Path, seed: int) -> Path:
    """One 512² case: painted on KiTS19 case_00006's masks when present, else generated."""
    from nephroseg.synth import SynthConfig, synthesize_cohort

    folder = out / "kits_sized"
    masks = sorted(p.name for p in SHARED_MASKS.glob("case_*") if (p / "segmentation.nii.gz").is_file())
    if "case_00006" in masks:
        synthesize_cohort(
            folder,
            1,
            seed,
            SynthConfig(),
            from_masks=SHARED_MASKS,
            start_index=masks.index("case_00006"),
            progress=False,
        )
    else:
        config = SynthConfig(size=512, slice_thickness_mm=(3.0, 3.0), z_extent_mm=(450.0, 480.0))
        synthesize_cohort(folder, 1, seed, config, start_index=6, progress=False)
    return folder


def time_tiles(
    bin_dir: Path, script: str, inputs: list[str], shape, spacing, args, env: dict
) -> subprocess.CompletedProcess:
    """A tile timer in nnU-Net's environment: ``inputs`` (a model folder, or plans and dataset.json),
    then the case's shape and spacing in nnU-Net's (z, y, x) reading order, tiles to time, threads."""
    case = [json.dumps(shape[::-1]), json.dumps(spacing[::-1]), str(args.tiles), str(args.threads)]
    return subprocess.run(
        [str(bin_dir / "python"), "-c", script, *inputs, *case],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def kits_plan_tiles(ours, bin_dir: Path, big: Path, env: dict, shape, spacing, args) -> dict[str, dict]:
    """nnU-Net's own plans for the KiTS-sized case (fingerprint + plan, no training), and the time of
    the tiles of an untrained network of each, by configuration ('2d', '3d_fullres'); empty or
    partial where nnU-Net refuses."""
    dataset_id, name = DATASET_ID + 1, "KiTSSized"
    raw = env["nnUNet_raw"]
    export = [*ours, "export-nnunet", "--data", str(big), "--out", raw, "--overwrite"]
    subprocess.run([*export, "--dataset-id", str(dataset_id), "--name", name], check=True)
    for tool in ("nnUNetv2_extract_fingerprint", "nnUNetv2_plan_experiment"):
        extra = ["-np", "1"] if tool == "nnUNetv2_extract_fingerprint" else []
        done = subprocess.run([str(bin_dir / tool), "-d", str(dataset_id), *extra], env=env, check=False)
        if done.returncode != 0:
            print(f"[peer] {tool} failed on the KiTS-sized case; its plan is not timed", flush=True)
            return {}
    folder = f"Dataset{dataset_id:03d}_{name}"
    plans = Path(env["nnUNet_preprocessed"]) / folder / "nnUNetPlans.json"
    found = {}
    for config in ("2d", "3d_fullres"):
        inputs = [str(plans), str(Path(raw) / folder / "dataset.json"), config]
        timed = time_tiles(bin_dir, PLAN_TILE_TIMER, inputs, shape, spacing, args, env)
        if timed.returncode != 0:
            print(f"[peer] timing the KiTS-sized {config} plan failed:\n{timed.stderr[-2000:]}", flush=True)
            continue
        found[config] = json.loads(timed.stdout.strip().splitlines()[-1])
    return found


def flat_images(cohort: Path, target: Path) -> Path:
    """``case_NNNNN_0000.nii.gz`` copies of a KiTS folder's images, as nnU-Net reads them."""
    target.mkdir(parents=True, exist_ok=True)
    for case in sorted(cohort.glob("case_*")):
        shutil.copyfile(case / "imaging.nii.gz", target / f"{case.name}_0000.nii.gz")
    return target


def nnunet_predict_cmd(bin_dir: Path, images: Path, target: Path, config: str, device: str) -> list[str]:
    """``nnUNetv2_predict`` with the bench's trainer, fold 0, final checkpoint, one worker each side."""
    return [
        str(bin_dir / "nnUNetv2_predict"),
        *("-i", str(images), "-o", str(target), "-d", str(DATASET_ID), "-c", config, "-f", "0"),
        *("-tr", TRAINER, "-chk", "checkpoint_final.pth", "-device", device, "-npp", "1", "-nps", "1"),
    ]


def score(pred: Path, gt: Path) -> dict:
    from nephroseg.metrics import evaluate_folders

    return evaluate_folders(pred, gt).mean


def timed_in_turn(jobs: dict[str, Callable[[], dict]], repeats: int) -> dict[str, dict]:
    """Run every job ``repeats`` times, all of them in turn each round, so that a slower minute of the
    machine hits every tool alike; per job the median seconds, every run's seconds and the peak RSS."""
    runs: dict[str, list[dict]] = {key: [] for key in jobs}
    for _ in range(repeats):
        for key, job in jobs.items():
            runs[key].append(job())
    return {
        key: {
            "s": statistics.median(r["s"] for r in stats),
            "runs_s": [r["s"] for r in stats],
            "rss_mb": max(r["rss_mb"] for r in stats),
        }
        for key, stats in runs.items()
    }


def seconds(stats: dict) -> str:
    """The table's note on a timed command: the median of its runs and their range."""
    times = stats["runs_s"]
    if len(times) == 1:
        return "one run"
    return f"median of {len(times)} runs in turn with the other tools ({min(times):.1f}–{max(times):.1f} s)"


def dice(stats: dict) -> str:
    """The composite Dice of a timed prediction of the KiTS-sized case, for its table row."""
    return f"{stats['dice']['composite_dice']:.3f}"


def differing_voxels(a: Path, b: Path) -> int:
    """How many voxels two prediction folders (same case names) label differently."""
    import nibabel as nib
    import numpy as np

    total = 0
    for first in sorted(a.glob("*.nii.gz")):
        labels_a = np.asarray(nib.load(first).dataobj)
        labels_b = np.asarray(nib.load(b / first.name).dataobj)
        total += int((labels_a != labels_b).sum())
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "bench_out" / "peer_nnunet")
    parser.add_argument("--venv", type=Path, default=REPO / "bench_out" / "nnunet_venv")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps for both tools")
    parser.add_argument("--cases", type=int, default=None, help="training cases")
    parser.add_argument("--ours-recipe", default=None, help="default: nnunet3d when present, else resunet25d")
    parser.add_argument("--device", default="cpu", help="device for both tools (nnU-Net: cpu/cuda)")
    parser.add_argument("--skip-install", action="store_true", help="use --venv as it is")
    parser.add_argument("--ours-profile", default="quick")
    parser.add_argument(
        "--ours-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a recipe override for ours' training (repeatable), e.g. model.width=0.5",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each whole command on the KiTS-sized case, the tools in turn; the table gives "
        "the median (default 3)",
    )
    parser.add_argument("--tiles", type=int, default=2, help="3d_fullres tiles timed on the KiTS-sized case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="the steps split into this many epochs for both tools (nnU-Net lowers its rate once per "
        "epoch; default 1 in --quick, else 10)",
    )
    parser.add_argument(
        "--size", type=int, default=None, help="in-plane pixels of the cohort (128 quick, 256)"
    )
    parser.add_argument(
        "--no-mirroring", action="store_true", help="skip the mirrored rows (accuracy runs at many steps)"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="the batch size of nnU-Net 2d and of ours (equal samples as well as equal steps); "
        "default: each tool's own (nnU-Net 2d's plan, ours' recipe). 3d_fullres keeps its plan",
    )
    parser.add_argument(
        "--no-wallclock",
        action="store_true",
        help="skip the row of ours trained for nnU-Net 2d's training time (on by default outside --quick)",
    )
    parser.add_argument(
        "--steps-3d", type=int, default=None, help="nnU-Net 3d_fullres steps (default: --steps; 5 in --quick)"
    )
    parser.add_argument(
        "--ours-coarse-steps",
        type=int,
        default=0,
        help="train ours as the 2.5D cascade within the same step budget: a kidney finder "
        "(--ours-coarse-profile) for this many of the steps, the refine model (--ours-profile, e.g. "
        "demo) for the rest; both predictions go through --coarse-model",
    )
    parser.add_argument("--ours-coarse-profile", default="demo_coarse")
    parser.add_argument(
        "--ours-cascade",
        nargs=2,
        type=Path,
        default=None,
        metavar=("RUN", "COARSE_RUN"),
        help="also predict with a trained 2.5D cascade (e.g. demo_out/run demo_out/run_coarse): the "
        "held-out cases and the KiTS-sized case, without mirroring; trained outside the bench, so "
        "its rows are not at equal steps",
    )
    args = parser.parse_args(argv)
    steps = args.steps or (20 if args.quick else 250)
    if not 0 <= args.ours_coarse_steps < steps:
        parser.error("--ours-coarse-steps must lie in [0, --steps)")
    steps_3d = args.steps_3d or (5 if args.quick else steps)
    epochs = args.epochs or (1 if args.quick else 10)

    n_train = args.cases or (6 if args.quick else 20)
    n_test = 2 if args.quick else HELD_OUT
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    bin_dir = ensure_venv(args.venv, args.skip_install)
    if args.ours_recipe is None:
        from nephroseg.recipe import available_recipes

        args.ours_recipe = "nnunet3d" if "nnunet3d" in available_recipes() else "resunet25d"
    ours_name = " ".join([args.ours_recipe, *args.ours_set])
    if args.ours_coarse_steps:
        ours_name += f" cascade ({args.ours_coarse_profile} + {args.ours_profile})"
    env = {
        **os.environ,
        "nnUNet_raw": str(out / "nnUNet_raw"),
        "nnUNet_preprocessed": str(out / "nnUNet_preprocessed"),
        "nnUNet_results": str(out / "nnUNet_results"),
        "nnUNet_n_proc_DA": "1",
        "nnUNet_compile": "f",
        "OMP_NUM_THREADS": str(args.threads),
        "BENCH_STEPS": str(steps),
    }
    train_dir, test_dir = build_cohort(
        out, n_train, n_test, args.size or (128 if args.quick else 256), args.seed
    )
    big = kits_sized_case(out, args.seed)
    ours = [str(Path(sys.executable).parent / "nephroseg")]

    # Export and plan/preprocess (nnU-Net), prepare (ours); per training case.
    subprocess.run(
        [
            *ours,
            "export-nnunet",
            "--data",
            str(train_dir),
            "--out",
            env["nnUNet_raw"],
            "--overwrite",
            "--dataset-id",
            str(DATASET_ID),
            "--name",
            DATASET_NAME,
        ],
        check=True,
    )
    plan = run(
        [
            str(bin_dir / "nnUNetv2_plan_and_preprocess"),
            "-d",
            str(DATASET_ID),
            "-c",
            "2d",
            "3d_fullres",
            "-np",
            "1",
            "--verify_dataset_integrity",
        ],
        env,
        "nnU-Net plan+preprocess",
    )

    # Training at equal optimizer steps.
    theirs = {}
    for config, config_steps in (("2d", steps), ("3d_fullres", steps_3d)):
        n_epochs, per_epoch = split_steps(config_steps, epochs)
        theirs[config] = run(
            [
                str(bin_dir / "nnUNetv2_train"),
                str(DATASET_ID),
                config,
                "0",
                "-tr",
                TRAINER,
                "-device",
                args.device,
            ],
            {
                **env,
                "BENCH_EPOCHS": str(n_epochs),
                "BENCH_STEPS": str(per_epoch),
                **({"BENCH_BATCH": str(args.batch)} if args.batch else {}),
            },
            f"nnU-Net train {config} ({config_steps} steps)",
        )

    train_cmd = [*ours, "train", "--data", str(train_dir), "--recipe", args.ours_recipe]
    train_cmd += ["--no-progress", "--device", args.device]

    def train_ours(folder: Path, n_steps: int) -> dict:
        """Ours for ``n_steps`` optimizer steps; as a cascade, the finder takes its share of them."""
        return train_ours_cascade(
            train_cmd,
            folder,
            n_steps,
            epochs,
            profile=args.ours_profile,
            batch=args.batch,
            overrides=args.ours_set,
            env=env,
            coarse_steps=round(n_steps * args.ours_coarse_steps / steps),
            coarse_profile=args.ours_coarse_profile,
        )

    def predict_ours(folder: Path, target: Path, tta: bool) -> dict:
        shutil.rmtree(target, ignore_errors=True)
        cmd = [*ours, "predict", "-i", str(test_dir), "-o", str(target), "-m", str(folder), "--no-progress"]
        cmd += ["--device", args.device, "--threads", str(args.threads), "--tta" if tta else "--no-tta"]
        return run([*cmd, *finder_options(folder, args.ours_coarse_steps)], env, f"ours predict tta={tta}")

    run_dir = out / "ours_run"
    ours_train = train_ours(run_dir, steps)
    # Equal wall-clock: as many of our steps as nnU-Net 2d's whole training command took (per step
    # measured on ours' own whole command), when that is more than the equal-steps count.
    wall_steps = int(theirs["2d"]["s"] / (ours_train["s"] / steps)) // epochs * epochs
    wall_dir = out / "ours_run_wallclock"
    wanted = not (args.quick or args.no_wallclock) and wall_steps > steps
    wall_train = train_ours(wall_dir, wall_steps) if wanted else None

    # Prediction of the held-out cases, without and with mirroring; scored by our evaluator.
    images = flat_images(test_dir, out / "test_images")
    results = []
    for config in ("2d", "3d_fullres"):
        for tta in (False,) if args.no_mirroring else (False, True):
            if args.quick and config == "3d_fullres" and tta:
                continue  # 8 mirrorings of 3d_fullres alone take longer than --quick's budget
            target = out / f"pred_nnunet_{config}{'_tta' if tta else ''}"
            shutil.rmtree(target, ignore_errors=True)
            cmd = nnunet_predict_cmd(bin_dir, images, target, config, args.device)
            stats = run(cmd + ([] if tta else ["--disable_tta"]), env, f"nnU-Net predict {config} tta={tta}")
            results.append((f"nnU-Net {config}", tta, stats, score(target, test_dir)))
    for tta in (False,) if args.no_mirroring else (False, True):
        target = out / f"pred_ours{'_tta' if tta else ''}"
        stats = predict_ours(run_dir, target, tta)
        results.append((f"ours {ours_name}", tta, stats, score(target, test_dir)))
    cascade_args = []
    if args.ours_cascade:
        refine, coarse = args.ours_cascade
        cascade_args = ["--coarse-model", str(coarse)]
        target = out / "pred_ours_cascade"
        shutil.rmtree(target, ignore_errors=True)
        cmd = [*ours, "predict", "-i", str(test_dir), "-o", str(target), "-m", str(refine), *cascade_args]
        cmd += ["--no-progress", "--no-tta", "--device", args.device, "--threads", str(args.threads)]
        stats = run(cmd, env, "ours 2.5D cascade predict")
        name = "ours 2.5D cascade, trained outside the bench"
        results.append((name, False, stats, score(target, test_dir)))
    if wall_train is not None:
        target = out / "pred_ours_wallclock"
        stats = predict_ours(wall_dir, target, False)
        name = f"ours {ours_name}, {wall_steps} steps in nnU-Net 2d's training time"
        results.append((name, False, stats, score(target, test_dir)))

    # The KiTS-sized case: ours end to end, nnU-Net 2d end to end, 3d_fullres by timed tiles.
    big_images = flat_images(big, out / "big_images")
    case_dir = next(big.glob("case_*"))
    import nibabel as nib

    header = nib.load(case_dir / "imaging.nii.gz").header
    shape, spacing = [int(s) for s in header.get_data_shape()], [float(s) for s in header.get_zooms()]

    def predict_big(model: Path, target: Path, label: str, extra: list[str] | None = None) -> dict:
        """Time ``predict`` on the KiTS-sized case, without mirroring as nnU-Net's rows (a recipe's
        ``mirror_tta`` would otherwise turn it on)."""
        cmd = [*ours, "predict", "-i", str(big), "-o", str(target), "-m", str(model), "--overwrite"]
        cmd += [*(extra or []), "--no-progress", "--no-tta", "--device", args.device]
        cmd += ["--threads", str(args.threads)]
        return run(cmd, env, label)

    # Each whole command on the KiTS-sized case writes its labels to big_dir[its key].
    big_dir = {key: out / f"big_{key}" for key in ("ours", "ours_onnx", "ours_cascade", "nnunet_2d")}

    def predict_big_nnunet_2d() -> dict:
        shutil.rmtree(big_dir["nnunet_2d"], ignore_errors=True)
        cmd = nnunet_predict_cmd(bin_dir, big_images, big_dir["nnunet_2d"], "2d", args.device)
        return run([*cmd, "--disable_tta"], env, "nnU-Net 2d KiTS-sized")

    big_cascade = finder_options(run_dir, args.ours_coarse_steps)
    big_jobs = {"ours": lambda: predict_big(run_dir, big_dir["ours"], "ours predict KiTS-sized", big_cascade)}
    # The same network through onnxruntime (`export-onnx`, then `predict -m model.onnx`): CPU only.
    if args.device == "cpu":
        onnx_path = out / "ours.onnx"
        run(
            [*ours, "export-onnx", "-m", str(run_dir), "-o", str(onnx_path), "--overwrite"],
            env,
            "ours export-onnx",
        )
        label = "ours predict KiTS-sized, ONNX"
        big_jobs["ours_onnx"] = lambda: predict_big(onnx_path, big_dir["ours_onnx"], label, big_cascade)
    if args.ours_cascade:
        cascade_label = "ours 2.5D cascade KiTS-sized"
        big_jobs["ours_cascade"] = lambda: predict_big(
            args.ours_cascade[0], big_dir["ours_cascade"], cascade_label, cascade_args
        )
    big_jobs["nnunet_2d"] = predict_big_nnunet_2d
    big_times = timed_in_turn(big_jobs, args.repeats)
    for key, stats in big_times.items():  # every repeat writes the same labels: score the last
        stats["dice"] = score(big_dir[key], big)
    ours_big, theirs_2d_big = big_times["ours"], big_times["nnunet_2d"]
    ours_onnx_big, cascade_big = big_times.get("ours_onnx"), big_times.get("ours_cascade")
    onnx_differ = differing_voxels(big_dir["ours"], big_dir["ours_onnx"]) if ours_onnx_big else None
    model_3d = (
        Path(env["nnUNet_results"])
        / f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"
        / f"{TRAINER}__nnUNetPlans__3d_fullres"
    )
    # nnU-Net's arrays are (x, y, z) as nibabel reads them; the tile count is order-free in shape terms
    # only once the axes match its plans: give it the volume's (z, y, x) as its reader does.
    tiles = time_tiles(bin_dir, TILE_TIMER, [str(model_3d)], shape, spacing, args, env)
    if tiles.returncode != 0:
        raise SystemExit(f"[peer] timing 3d_fullres tiles failed:\n{tiles.stderr[-2000:]}")
    tile = json.loads(tiles.stdout.strip().splitlines()[-1])
    kits_plans = kits_plan_tiles(ours, bin_dir, big, env, shape, spacing, args)
    kits_tile = kits_plans.get("3d_fullres")
    theirs_3d_big_s = (kits_tile or tile)["tiles"] * (kits_tile or tile)["per_tile_s"]
    prepare_ours = json.loads((run_dir / "summary.json").read_text())["prepare_seconds_per_case"]

    lines = [
        "| tool | mirroring | predict s/case | peak RSS MB | composite | kidney+tumor | tumor |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, tta, stats, scores in results:
        lines.append(
            f"| {name} | {'yes' if tta else 'no'} | {stats['s'] / n_test:.1f} | {stats['rss_mb']:.0f} "
            f"| {scores['composite_dice']:.3f} | {scores['kidney_tumor_dice']:.3f} "
            f"| {scores['tumor_dice']:.3f} |"
        )
    lines += [
        "",
        "| KiTS-sized case "
        + f"({shape[0]} slices of {shape[1]}×{shape[2]}, KiTS axis order)"
        + " | seconds | peak RSS MB | composite | note |",
        "|---|---:|---:|---:|---|",
        f"| ours, end to end | {ours_big['s']:.1f} | {ours_big['rss_mb']:.0f} | {dice(ours_big)} "
        f"| whole command, no mirroring; {seconds(ours_big)} |",
    ]
    if ours_onnx_big:
        lines.append(
            f"| ours, end to end, ONNX | {ours_onnx_big['s']:.1f} | {ours_onnx_big['rss_mb']:.0f} "
            f"| {dice(ours_onnx_big)} | whole command, `predict -m ours.onnx` (onnxruntime); "
            f"{onnx_differ} voxels differ from torch; {seconds(ours_onnx_big)} |"
        )
    if cascade_big:
        lines.append(
            f"| ours, 2.5D cascade, end to end | {cascade_big['s']:.1f} | {cascade_big['rss_mb']:.0f} "
            f"| {dice(cascade_big)} | whole command, `predict -m {args.ours_cascade[0]} --coarse-model "
            f"{args.ours_cascade[1]} --no-tta` (trained outside the bench); {seconds(cascade_big)} |"
        )
    lines += [
        f"| nnU-Net 2d, end to end | {theirs_2d_big['s']:.1f} | {theirs_2d_big['rss_mb']:.0f} "
        f"| {dice(theirs_2d_big)} | whole command, no mirroring; {seconds(theirs_2d_big)} |",
        f"| nnU-Net 3d_fullres | {tile['tiles'] * tile['per_tile_s']:.0f} | – | – | extrapolated: "
        f"{tile['tiles']} tiles of "
        f"{tile['patch']} × "
        f"{tile['per_tile_s']:.2f} s (timed on {args.tiles}), plan of the training cohort "
        f"(spacing {tile['spacing']}), no mirroring, preprocessing not included |",
    ]
    if kits_tile:
        n, per, patch = kits_tile["tiles"], kits_tile["per_tile_s"], kits_tile["patch"]
        lines.append(
            f"| nnU-Net 3d_fullres, planned on this case | {n * per:.0f} | – | – | extrapolated: {n} tiles "
            f"of {patch} × {per:.2f} s (untrained network of nnU-Net's own plan for this case, "
            f"spacing {kits_tile['spacing']}), no mirroring |"
        )
    if "2d" in kits_plans:
        plan_2d = kits_plans["2d"]
        n, per, patch = plan_2d["tiles"], plan_2d["per_tile_s"], plan_2d["patch"]
        lines.append(
            f"| nnU-Net 2d, planned on this case | {n * per:.0f} | – | – | extrapolated: {n} tiles of "
            f"{patch} × {per:.2f} s (untrained network of nnU-Net's own 2d plan for this case, spacing "
            f"{plan_2d['spacing']}), network only: no reading, resampling or writing, no mirroring |"
        )
    lines += [
        "",
        f"Training: {steps} optimizer steps each in {split_steps(steps, epochs)[0]} epochs"
        + (f", batch {args.batch} for nnU-Net 2d and ours" if args.batch else "")
        + "; nnU-Net 2d "
        f"{theirs['2d']['s']:.0f} s, 3d_fullres "
        f"{theirs['3d_fullres']['s']:.0f} s ({steps_3d} steps), ours {ours_train['s']:.0f} s "
        + (f"({wall_steps} steps: {wall_train['s']:.0f} s) " if wall_train else "")
        + "(whole commands). Preprocessing per training case: nnU-Net plan + preprocess (2d and "
        f"3d_fullres) {plan['s'] / n_train:.1f} s, ours (read, fingerprint, resample, cache; in "
        f"`train`) {prepare_ours:.1f} s.",
    ]
    ours_score = next(s for n, t, _, s in results if n.startswith("ours") and not t)["composite_dice"]
    theirs_score = max(s["composite_dice"] for n, t, _, s in results if n.startswith("nnU-Net") and not t)
    fastest = min(ours_big["s"], ours_onnx_big["s"] if ours_onnx_big else float("inf"))
    lines.append(
        f"\nSpeed-ups use ours' faster path ({'ONNX' if fastest != ours_big['s'] else 'torch'}, "
        f"{fastest:.1f} s); with torch: {theirs_3d_big_s / ours_big['s']:.2f}× vs 3d_fullres, "
        f"{theirs_2d_big['s'] / ours_big['s']:.2f}× vs 2d."
    )
    if cascade_big:
        lines.append(
            f"With the 2.5D cascade ({cascade_big['s']:.1f} s): {theirs_3d_big_s / cascade_big['s']:.2f}× vs "
            f"3d_fullres, {theirs_2d_big['s'] / cascade_big['s']:.2f}× vs 2d (not in the last line: its "
            "models were not trained at equal steps)."
        )
    summary = (
        f"speedup_vs_nnunet_3d={theirs_3d_big_s / fastest:.2f} "
        f"speedup_vs_nnunet_2d={theirs_2d_big['s'] / fastest:.2f} "
        f"dice_delta={ours_score - theirs_score:+.3f}"
    )
    text = "\n".join(lines) + "\n"
    (out / "peer_nnunet.md").write_text(text + "\n" + summary + "\n")
    (out / "peer_nnunet.json").write_text(
        json.dumps(
            {"results": [(n, t, s, sc) for n, t, s, sc in results], "tiles": tile, "summary": summary},
            indent=1,
            default=str,
        )
    )
    print(text)
    print(summary)


if __name__ == "__main__":
    main()
