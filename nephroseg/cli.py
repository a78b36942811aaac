"""The ``nephroseg`` command: a thin typer layer over the package's functions.

Every command does what a Python function of the same name does; this file only parses arguments.
A problem the user can fix is printed on one line (``error: FILE: problem``) with exit status 2.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import click
import typer

from nephroseg.demo import DemoSettings
from nephroseg.errors import NephrosegInputError, NephrosegInputWarning

app = typer.Typer(
    name="nephroseg",
    help="Kidney and kidney-tumor segmentation in abdominal CT (KiTS19: 0 background, 1 kidney, 2 tumor).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        import torch

        typer.echo(f"nephroseg {version('nephroseg')} (torch {torch.__version__})")
        raise typer.Exit()


@app.callback()
def _top_level(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Options before any command (the help text is the app's)."""


ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
DeviceOption = Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")]


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the KiTS19-layout cohort into.")],
    cases: Annotated[int, typer.Option(help="Number of cases.", min=1)] = 10,
    seed: Annotated[int, typer.Option(min=0, help="Cohort seed: same seed, same cases.")] = 0,
    size: Annotated[
        int, typer.Option(help="In-plane size in pixels (512 as KiTS19; smaller is faster).")
    ] = 512,
    first_index: Annotated[int, typer.Option(help="Number of the first case (case_NNNNN).", min=0)] = 0,
    min_tumors: Annotated[int, typer.Option(help="Fewest tumors per case (every KiTS19 case has one).")] = 1,
    max_tumors: Annotated[int, typer.Option(help="Most tumors per case.")] = 3,
    thickness: Annotated[
        tuple[float, float], typer.Option(help="Slice thickness range in mm (KiTS19: 0.5 to 5).")
    ] = (0.5, 5.0),
    length: Annotated[
        tuple[float, float] | None,
        typer.Option(
            help="Scanned length range in mm, the kidneys inside (KiTS19: 150 to 755; default 120 to 300)."
        ),
    ] = None,
    from_masks: Annotated[
        Path | None, typer.Option(help="Paint CT onto the label maps of this KiTS-layout folder instead.")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Processes generating cases (the files do not depend on it).", min=1)
    ] = 1,
    progress: ProgressOption = True,
) -> None:
    """Generate synthetic KiTS-like CT phantoms (imaging + segmentation + kits.json)."""
    from nephroseg.synth import SynthConfig, synthesize_cohort

    try:
        config = SynthConfig(
            size=size,
            min_tumors=min_tumors,
            max_tumors=max_tumors,
            slice_thickness_mm=tuple(thickness),
            **({"z_extent_mm": tuple(length)} if length else {}),
        )
    except ValueError as err:
        raise NephrosegInputError("synth options", str(err)) from err
    written = synthesize_cohort(
        out,
        cases,
        seed,
        config,
        from_masks=from_masks,
        start_index=first_index,
        progress=progress,
        workers=workers,
    )
    typer.echo(f"wrote {len(written)} cases to {out}")


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="KiTS-layout folder of labelled cases.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (checkpoints, logs, curves).")],
    recipe: Annotated[
        str, typer.Option(help="Recipe name (see `nephroseg recipes`) or YAML file.")
    ] = "resunet25d",
    profile: Annotated[str | None, typer.Option(help="A named profile of the recipe, e.g. demo.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a recipe field: section.key=value (repeatable)."),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed for the split, initialization and sampling.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    device: DeviceOption = "auto",
    cache: Annotated[
        Path | None, typer.Option(help="Folder for preprocessed cases (default: RUN/cache).")
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(help="Local weights (state dict or checkpoint) for the new model or its encoder."),
    ] = None,
    progress: ProgressOption = True,
) -> None:
    """Train a recipe; the best checkpoint is chosen by validation KiTS composite Dice.

    Several GPUs: `torchrun --nproc_per_node N -m nephroseg.cli train ...` (one process per GPU,
    DistributedDataParallel; train.batch_size is per process)."""
    from nephroseg.recipe import load_recipe
    from nephroseg.training import train as train_run
    from nephroseg.training.distributed import is_main_process

    loaded = load_recipe(recipe, profile=profile, overrides=set_)
    result = train_run(
        data,
        loaded,
        out,
        seed=seed,
        resume=resume,
        device=device,
        cache_dir=cache,
        progress=progress,
        weights=weights,
    )
    if not is_main_process():
        return
    typer.echo(
        f"best checkpoint {result.best_checkpoint} (epoch {result.best_epoch + 1}, "
        f"validation composite Dice {result.best_composite_dice:.4f})"
    )


@app.command()
def cv(
    data: Annotated[Path, typer.Option(help="KiTS-layout folder of labelled cases.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for fold_K runs and out-of-fold results.")],
    recipe: Annotated[str, typer.Option(help="Recipe name or YAML file.")] = "resunet25d",
    profile: Annotated[str | None, typer.Option(help="A named profile of the recipe.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe field (repeatable).")
    ] = None,
    folds: Annotated[int | None, typer.Option(help="Number of folds (default: the recipe's).", min=2)] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed for the folds and training.")] = 0,
    device: DeviceOption = "auto",
    progress: ProgressOption = True,
) -> None:
    """k-fold cross-validation: trains every fold (resuming), predicts each fold's held-out cases,
    reports per-fold and pooled scores. `predict --model OUT` then ensembles the folds."""
    from nephroseg.recipe import load_recipe
    from nephroseg.training.crossval import cross_validate
    from nephroseg.training.distributed import is_main_process

    loaded = load_recipe(recipe, profile=profile, overrides=set_)
    result = cross_validate(data, loaded, out, folds=folds, seed=seed, device=device, progress=progress)
    if not is_main_process():
        return
    for fold, metrics in enumerate(result.per_fold):
        typer.echo(f"fold {fold}: composite_dice={metrics['composite_dice']:.4f}")
    typer.echo(
        f"pooled: composite_dice={result.pooled.composite_dice:.4f} ({len(result.pooled.per_case)} cases)"
    )


@app.command()
def sweep(
    data: Annotated[Path, typer.Option(help="KiTS-layout folder of labelled cases.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for one run per value and sweep.csv.")],
    values: Annotated[list[str], typer.Option("--value", help="A value to try (repeatable).")],
    key: Annotated[str, typer.Option(help="The recipe field to vary.")] = "train.lr",
    recipe: Annotated[str, typer.Option(help="Recipe name or YAML file.")] = "resunet25d",
    profile: Annotated[str | None, typer.Option(help="A named profile of the recipe.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe field (repeatable).")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed shared by every run.")] = 0,
    device: DeviceOption = "auto",
    progress: ProgressOption = True,
) -> None:
    """Train one run per value of a recipe field (default: the learning rate) and rank them."""
    from nephroseg.recipe import load_recipe
    from nephroseg.training.distributed import is_main_process
    from nephroseg.training.sweep import sweep as run_sweep

    loaded = load_recipe(recipe, profile=profile, overrides=set_)
    points = run_sweep(data, loaded, out, key, values, seed=seed, device=device, progress=progress)
    if not is_main_process():
        return
    for point in sorted(points, key=lambda p: -p.best_composite_dice):
        typer.echo(f"{key}={point.value}: best validation composite_dice={point.best_composite_dice:.4f}")


@app.command()
def predict(
    input_: Annotated[
        Path, typer.Option("--input", "-i", help="A NIfTI file, a folder of them or a KiTS folder.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output folder, or a .nii.gz file for one input.")
    ],
    model: Annotated[
        list[Path],
        typer.Option("--model", "-m", help="Run folder, checkpoint or .onnx file; repeat to ensemble."),
    ],
    device: DeviceOption = "auto",
    batch_size: Annotated[int, typer.Option(help="Slices per forward pass.", min=1)] = 8,
    tta: Annotated[
        bool | None,
        typer.Option(
            help="Average over mirrorings (2.5D: those it was trained with; 3D: all 8) and, for 2.5D, "
            "the zooms of the recipe's train.tta_scales. Default: the recipe's volumetric.mirror_tta "
            "(3D) or train.mirror_tta and tta_scales (2D/2.5D); --no-tta: neither."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing output files.")] = False,
    resume: Annotated[
        bool,
        typer.Option(
            help="Keep the labels an interrupted run into this folder wrote and predict the rest "
            "(refused when the folder was predicted with other models or settings)."
        ),
    ] = False,
    max_memory: Annotated[
        str | None,
        typer.Option(
            help="Refuse volumes estimated to need more memory, e.g. 512MB, 4GB (the whole process: "
            "Python, torch and the models count)."
        ),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (default: all).", min=1)] = None,
    coarse_model: Annotated[
        list[Path] | None,
        typer.Option(
            help="A run that finds the kidneys first (repeatable): a low-resolution 3D model for 3D "
            "models, any model for a 2.5D kidney-crop model (the cascade)."
        ),
    ] = None,
    format_: Annotated[
        str, typer.Option("--format", help="Output format: nifti, nrrd, mha, or dicom-seg (DICOM input).")
    ] = "nifti",
    precision: Annotated[
        str,
        typer.Option(
            help="auto (bf16 on CPUs with native bfloat16, fp16 on CUDA, else fp32), fp32, bf16 or fp16."
        ),
    ] = "auto",
    progress: ProgressOption = True,
) -> None:
    """Segment CT volumes (NIfTI, NRRD, MHA, a DICOM series folder, or a folder of those: one case per
    file or subfolder); labels are written on each input's own grid (shape, affine, orientation)."""
    from nephroseg.inference import predict as predict_volumes

    written = predict_volumes(
        input_,
        output,
        model,
        device=device,
        batch_size=batch_size,
        tta=tta,
        overwrite=overwrite,
        progress=progress,
        max_memory=max_memory,
        threads=threads,
        coarse_models=coarse_model,
        output_format=format_,
        precision=precision,
        resume=resume,
    )
    typer.echo(f"wrote {len(written)} segmentation(s) to {output}")


@app.command("export-onnx")
def export_onnx(
    model: Annotated[
        Path, typer.Option("--model", "-m", help="Run folder (its best checkpoint) or checkpoint.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The .onnx file to write.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
) -> None:
    """Export a trained model to ONNX (recipe inside); `predict -m FILE.onnx` runs it in onnxruntime."""
    from nephroseg.inference.onnx_backend import export_run

    typer.echo(f"wrote {export_run(model, out, overwrite=overwrite)}")


@app.command("export-nnunet")
def export_nnunet(
    data: Annotated[Path, typer.Option(help="KiTS-layout folder (labelled cases → imagesTr/labelsTr).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="nnU-Net raw root (nnUNet_raw).")],
    dataset_id: Annotated[int, typer.Option(help="nnU-Net dataset number (1-999).")] = 220,
    name: Annotated[str, typer.Option(help="Dataset name (letters and digits).")] = "KiTS19Synth",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset folder.")] = False,
) -> None:
    """Write the cohort as an nnU-Net v2 raw dataset (files copied unchanged, or hard-linked)."""
    from nephroseg.io.nnunet_raw import export_nnunet as export

    typer.echo(f"wrote {export(data, out, dataset_id, name, overwrite=overwrite)}")


@app.command("import-nnunet")
def import_nnunet(
    dataset: Annotated[Path, typer.Option(help="An nnU-Net v2 raw dataset folder (DatasetNNN_Name).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="KiTS-layout folder to write.")],
    overwrite: Annotated[bool, typer.Option(help="Replace existing case files.")] = False,
) -> None:
    """Read an nnU-Net v2 raw dataset back into the KiTS layout."""
    from nephroseg.io.nnunet_raw import import_nnunet as import_

    typer.echo(f"wrote {len(import_(dataset, out, overwrite=overwrite))} cases to {out}")


@app.command("import-kits")
def import_kits(
    data: Annotated[
        Path, typer.Option(help="A KiTS21 or KiTS23 dataset folder (case_NNNNN/imaging.nii.gz …).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="KiTS19-layout folder to write.")],
    overwrite: Annotated[bool, typer.Option(help="Replace existing case files.")] = False,
    resume: Annotated[
        bool, typer.Option(help="After an interruption: keep the cases written whole, write the rest.")
    ] = False,
    progress: ProgressOption = True,
) -> None:
    """Bring KiTS21/KiTS23 data to the KiTS19 task: cysts (label 3) become kidney (1); imaging linked."""
    from nephroseg.io.kits23 import import_kits23

    result = import_kits23(data, out, overwrite=overwrite, resume=resume, progress=progress)
    kept = f"; {result.kept} kept from an earlier run" if result.kept else ""
    typer.echo(
        f"wrote {len(result.cases)} cases to {out} ({result.labelled} labelled; "
        f"{result.cyst_voxels} cyst voxels relabelled as kidney{kept})"
    )


@app.command()
def convert(
    source: Annotated[Path, typer.Argument(help="NIfTI, NRRD or MHA file, or a DICOM series folder.")],
    target: Annotated[Path, typer.Argument(help="Output .nii.gz, .nii, .nrrd or .mha file.")],
    label: Annotated[bool, typer.Option(help="Read and write as a label map (uint8, values 0-2).")] = False,
    series_uid: Annotated[
        str | None, typer.Option(help="DICOM: the SeriesInstanceUID to convert (default: the largest).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
) -> None:
    """Convert a volume between formats, keeping its grid (shape, spacing, orientation, origin)."""
    from nephroseg.io.convert import convert_volume

    written = convert_volume(source, target, label=label, series_uid=series_uid, overwrite=overwrite)
    typer.echo(f"wrote {written}")


@app.command()
def evaluate(
    pred: Annotated[Path, typer.Option(help="Folder of predicted label maps (NIfTI, NRRD, MHA, DICOM-SEG).")],
    gt: Annotated[Path, typer.Option(help="Folder of ground truth (KiTS layout, flat files, DICOM-SEG).")],
    out: Annotated[
        Path | None, typer.Option(help="Where metrics.csv and metrics.json go (default: --pred's folder).")
    ] = None,
    allow_missing: Annotated[bool, typer.Option(help="Score only the cases that have a prediction.")] = False,
    progress: ProgressOption = True,
) -> None:
    """KiTS19 scores (kidney+tumor, tumor and composite Dice) plus per-class Dice/IoU, pixel accuracy
    and per-slice mean IoU, per case and on average."""
    from nephroseg.metrics import evaluate_folders, write_evaluation
    from nephroseg.metrics.evaluate import check_evaluation_target

    out = out or (pred.parent if pred.is_file() else pred)
    check_evaluation_target(out)  # before minutes of reading: not at the end
    evaluation = evaluate_folders(pred, gt, allow_missing=allow_missing, progress=progress)
    csv_path, _ = write_evaluation(evaluation, out)
    mean = evaluation.mean
    typer.echo(f"{len(evaluation.per_case)} cases, per-case table in {csv_path}")
    typer.echo(
        f"kidney_tumor_dice={mean['kidney_tumor_dice']:.4f} tumor_dice={mean['tumor_dice']:.4f} "
        f"composite_dice={mean['composite_dice']:.4f}"
    )


@app.command()
def report(
    pred: Annotated[Path, typer.Option(help="Folder of predicted label maps (NIfTI, NRRD, MHA, DICOM-SEG).")],
    images: Annotated[Path, typer.Option(help="Folder of the CT images (KiTS layout or flat files).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.md and figures/.")],
    gt: Annotated[Path | None, typer.Option(help="Ground truth, for Dice and overlays against it.")] = None,
    run: Annotated[Path | None, typer.Option(help="Training run folder, for its curves.")] = None,
    coarse_run: Annotated[
        Path | None, typer.Option(help="The cascade's coarse run, when --run is a kidney-crop model.")
    ] = None,
    kits_json: Annotated[Path | None, typer.Option(help="kits.json for reference tumor sizes.")] = None,
    viewer: Annotated[
        bool, typer.Option(help="Also a self-contained HTML page per case in viewer/ (about 60 kB a slice).")
    ] = True,
    progress: ProgressOption = True,
) -> None:
    """Volumes, tumor sizes, overlays of prediction against label, training curves: report.md."""
    from nephroseg.report.build import build_report

    path = build_report(
        pred,
        images,
        out,
        gt_dir=gt,
        run_dir=run,
        coarse_run_dir=coarse_run,
        kits_json=kits_json,
        viewer=viewer,
        progress=progress,
    )
    typer.echo(f"wrote {path}")


@app.command()
def view(
    image: Annotated[
        Path, typer.Argument(help="CT: a volume file, a DICOM series folder or a KiTS case folder.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The page to write (*.html).")],
    pred: Annotated[Path | None, typer.Option(help="Predicted labels (or DICOM-SEG), drawn filled.")] = None,
    gt: Annotated[
        Path | None, typer.Option(help="Ground truth, drawn as outlines (a KiTS case folder brings its own).")
    ] = None,
    window: Annotated[
        tuple[float, float], typer.Option(help="Display window in HU, lower and upper (level 40, width 400).")
    ] = (-160.0, 240.0),  # report.plots.ABDOMEN_WINDOW, not imported here: matplotlib is slow to load
) -> None:
    """One case in the browser: a self-contained HTML page to scroll through the CT with its labels."""
    from nephroseg.report.viewer import view_case

    path = view_case(image, out, prediction_path=pred, truth_path=gt, window=window)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): open it in a browser")


_DEMO = DemoSettings()  # the demo's defaults live in one place


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything the demo makes.")] = Path(
        "demo_out"
    ),
    train_cases: Annotated[int, typer.Option(help="Generated training cases.", min=2)] = _DEMO.train_cases,
    test_cases: Annotated[int, typer.Option(help="Generated held-out cases.", min=1)] = _DEMO.test_cases,
    size: Annotated[int, typer.Option(help="In-plane size of the generated cases.", min=32)] = _DEMO.size,
    profile: Annotated[
        str,
        typer.Option(
            help="Profile of the resunet25d recipe to train; a PROFILE_coarse profile, when the recipe "
            "has one, is trained first as the cascade's kidney finder."
        ),
    ] = _DEMO.profile,
    seed: Annotated[int, typer.Option(min=0, help="Cohort and training seed.")] = _DEMO.seed,
    progress: ProgressOption = True,
) -> None:
    """The main job end to end on generated data: synth → train → predict → evaluate → report."""
    from nephroseg.demo import run_demo

    settings = DemoSettings(
        train_cases=train_cases, test_cases=test_cases, size=size, profile=profile, seed=seed
    )
    result = run_demo(out, settings=settings, progress=progress)
    typer.echo(f"report: {result.report}")
    typer.echo(f"viewer: {result.report.parent / 'viewer'} (a page per case: open one in a browser)")
    typer.echo(f"composite_dice={result.composite_dice:.4f}")


@app.command()
def models() -> None:
    """List the registered models with their input kind, parameter count and source report."""
    from rich.console import Console
    from rich.table import Table

    from nephroseg.models import build_model, parameter_count, registered_models
    from nephroseg.recipe import ModelSpec

    table = Table("name", "input", "parameters", "source", "description")
    for info in registered_models():
        in_slices = 3 if info.input_kind == "2.5d" else 1
        count = parameter_count(build_model(ModelSpec(name=info.name, in_slices=in_slices)))
        table.add_row(info.name, info.input_kind, f"{count:,}", info.source, info.description)
    Console().print(table)


@app.command()
def recipes() -> None:
    """List the recipes in recipes/ with their source report and profiles."""
    from nephroseg.recipe import available_recipes, load_recipe

    for name in available_recipes():
        recipe = load_recipe(name)
        profiles = ", ".join(recipe.profiles) or "-"
        typer.echo(f"{name}: model {recipe.model.name}; profiles {profiles}; source {recipe.source}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the command and turns a user error into one line on stderr and exit 2
    (and a warning about an input into one ``warning: FILE: problem`` line)."""
    try:
        with _sigterm_unwinds(), warnings.catch_warnings():
            warnings.simplefilter("always", NephrosegInputWarning)
            warnings.showwarning = _show_warning(warnings.showwarning)
            result = app(args=argv, standalone_mode=False, prog_name="nephroseg")
    except NephrosegInputError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, typer.Abort):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except (click.ClickException, typer.TyperException) as err:  # typer now carries its own click
        show = getattr(err, "show", None)
        if show is not None:
            show()  # a usage error: what was wrong and where --help is, no traceback
        else:
            typer.echo(f"error: {err}", err=True)
        sys.exit(getattr(err, "exit_code", 2))
    if isinstance(result, int) and result:
        if result == INTERRUPTED:  # typer's answer to Ctrl-C
            typer.echo("interrupted", err=True)
        sys.exit(result)


INTERRUPTED = 130  # the shell's status for a command ended by SIGINT


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """A batch scheduler's SIGTERM (a job's time limit) unwinds like Ctrl-C: the temporary file of a
    write in progress is removed and the outputs already written stay; exit status 143."""

    def terminate(signum: int, frame) -> None:
        typer.echo("terminated", err=True)
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _show_warning(default):
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, NephrosegInputWarning):
            typer.echo(f"warning: {message}", err=True)
        else:
            default(message, category, filename, lineno, file, line)

    return show


if __name__ == "__main__":
    main()
