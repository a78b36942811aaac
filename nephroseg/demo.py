"""The main job on generated data, as ``make demo`` runs it: synthesize a training cohort and a
separately seeded held-out cohort, train the default recipe's demo profile on the CPU, predict the
held-out cases, evaluate, and write the report. Every stage resumes: re-running skips finished work.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI reads DemoSettings' defaults at start-up: keep this module light
    from nephroseg.metrics import Evaluation
    from nephroseg.recipe import Recipe
    from nephroseg.synth import SynthConfig

DEMO_RECIPE = "resunet25d"
DEMO_PROFILE = "demo"


@dataclass(frozen=True)
class DemoSettings:
    train_cases: int = 80  # 24 left the tumor under-learnt (docs/benchmarks.md, demo tuning)
    test_cases: int = 6
    size: int = 160  # in-plane pixels of the generated cases (KiTS19 ships 512)
    slice_thickness_mm: tuple[float, float] = (2.5, 5.0)
    seed: int = 0
    device: str = "cpu"
    profile: str = DEMO_PROFILE  # tests run the same flow with the "tiny" profile

    def synth_config(self) -> SynthConfig:
        """The generator settings of the demo's cohorts (benchmarks draw theirs the same way)."""
        from nephroseg.synth import SynthConfig

        return SynthConfig(size=self.size, min_tumors=1, slice_thickness_mm=self.slice_thickness_mm)


@dataclass(frozen=True)
class DemoResult:
    evaluation: Evaluation
    report: Path
    run_dir: Path

    @property
    def composite_dice(self) -> float:
        return self.evaluation.composite_dice


def _check_same_settings(out: Path, settings: DemoSettings, recipe: Recipe, coarse: Recipe | None) -> None:
    """Resuming is only sound with the settings and the resolved recipes the folder was made with:
    refuse otherwise (a run trained on another cohort, or by an older recipe, would be reused
    silently), and record them on the first run."""
    from nephroseg.errors import NephrosegInputError, listed
    from nephroseg.io.records import changed_settings, write_settings

    record = out / "demo_settings.json"

    def resolved(r: Recipe | None):
        return None if r is None else r.model_dump(mode="json", exclude={"profiles"})

    wanted = json.loads(
        json.dumps({**asdict(settings), "recipe": resolved(recipe), "coarse_recipe": resolved(coarse)})
    )
    if record.exists():
        changed = changed_settings(record, wanted)
        if changed:
            raise NephrosegInputError(
                out,
                f"holds a demo made with other settings ({', '.join(changed)}): "
                "give another --out or remove the folder",
            )
    elif out.exists() and (out / "run").exists():
        raise NephrosegInputError(out, "holds a demo of an earlier version: give another --out or remove it")
    elif out.is_dir() and (others := sorted(entry.name for entry in out.iterdir())):
        # the demo writes report.md, figures/, data/ …: not among a user's own files
        raise NephrosegInputError(
            out, f"holds other files ({listed(others, 3)}): give a new or empty folder as --out"
        )
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_settings(record, wanted)


def demo_recipes(profile: str) -> tuple[Recipe, Recipe | None]:
    """The demo's model and, when the recipe has a ``{profile}_coarse`` profile, the coarse model of
    its cascade (the model then segments a box around each kidney the coarse one finds)."""
    from nephroseg.recipe import load_recipe

    recipe = load_recipe(DEMO_RECIPE, profile=profile)
    coarse_profile = f"{profile}_coarse"
    coarse = load_recipe(DEMO_RECIPE, profile=coarse_profile) if coarse_profile in recipe.profiles else None
    return recipe, coarse


def run_demo(
    out: str | Path, *, settings: DemoSettings = DemoSettings(), progress: bool = True
) -> DemoResult:
    from nephroseg.inference import predict
    from nephroseg.metrics import evaluate_folders, write_evaluation
    from nephroseg.report.build import build_report
    from nephroseg.runtime import usable_cpu_count
    from nephroseg.synth import synthesize_cohort
    from nephroseg.training import train

    out = Path(out)
    recipe, coarse_recipe = demo_recipes(settings.profile)
    _check_same_settings(out, settings, recipe, coarse_recipe)
    train_dir, test_dir = out / "data", out / "test"
    predictions, run_dir, coarse_dir = out / "predictions", out / "run", out / "run_coarse"
    config = settings.synth_config()
    workers = usable_cpu_count()  # the files do not depend on it: not a recorded setting
    synthesize_cohort(
        train_dir, settings.train_cases, settings.seed, config, progress=progress, workers=workers
    )
    # A different cohort seed: the held-out cases share nothing with the training cases.
    synthesize_cohort(
        test_dir,
        settings.test_cases,
        settings.seed + 1,
        config,
        start_index=settings.train_cases,
        progress=progress,
        workers=workers,
    )
    stages = [(coarse_recipe, coarse_dir)] if coarse_recipe is not None else []
    for stage_recipe, stage_dir in [*stages, (recipe, run_dir)]:
        train(
            train_dir,
            stage_recipe,
            stage_dir,
            seed=settings.seed,
            resume=(stage_dir / "checkpoints" / "last.pt").exists(),
            device=settings.device,
            progress=progress,
        )
    predict(
        test_dir,
        predictions,
        [run_dir],
        device=settings.device,
        overwrite=True,
        progress=progress,
        coarse_models=[coarse_dir] if stages else None,
    )
    evaluation = evaluate_folders(predictions, test_dir)
    write_evaluation(evaluation, out)
    report = build_report(
        predictions,
        test_dir,
        out,
        gt_dir=test_dir,
        run_dir=run_dir,
        coarse_run_dir=coarse_dir if stages else None,
        progress=progress,
    )
    return DemoResult(evaluation, report, run_dir)
