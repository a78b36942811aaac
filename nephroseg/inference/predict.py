"""``nephroseg predict``: read → preprocess → model → write, in the source geometry of every input."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from nephroseg.errors import NephrosegInputError, NephrosegInputWarning, listed
from nephroseg.inference.cascade import KidneyCropSegmenter
from nephroseg.inference.guards import (
    activations_per_pixel,
    activations_per_voxel,
    check_memory,
    check_writable,
    hounsfield_warning,
    orientation_warning,
    parse_size,
    peak_bytes,
    resident_bytes,
    volumetric_peak_bytes,
)
from nephroseg.inference.onnx_backend import is_onnx, load_onnx_model
from nephroseg.inference.resume import check_resumable, prediction_record, record_label
from nephroseg.inference.segmenter import SegmentationModel, Segmenter, view_spacing
from nephroseg.inference.sliding import VolumetricSegmenter, make_segmenter
from nephroseg.io import read_geometry, read_volume, write_like
from nephroseg.io.atomic import lies_inside, refuse_writing_into_source
from nephroseg.io.itk import is_itk
from nephroseg.io.listing import images_by_case
from nephroseg.io.volume import canonical_shape_and_spacing, is_nifti
from nephroseg.progress import progress_bar
from nephroseg.runtime import resolve_device, resolve_precision
from nephroseg.training.checkpoint import load_checkpoint, resolve_checkpoints


@dataclass(frozen=True)
class PredictionJob:
    case_id: str
    source: Path
    target: Path


OUTPUT_SUFFIXES = {"nifti": ".nii.gz", "nrrd": ".nrrd", "mha": ".mha", "dicom-seg": ".dcm"}


def plan_outputs(
    inputs: str | Path,
    output: str | Path,
    overwrite: bool,
    output_format: str = "nifti",
    resume: bool = False,
) -> list[PredictionJob]:
    """Pair every input volume with its output file and check the plan before any work is done.
    ``resume``: outputs that exist are allowed (they are kept; ``predict`` skips their cases)."""
    inputs, output = Path(inputs), Path(output)
    if resume and overwrite:
        raise NephrosegInputError("--resume", "keeps existing outputs, --overwrite replaces them: choose one")
    if output_format not in OUTPUT_SUFFIXES:
        raise NephrosegInputError(
            "--format", f"unknown format '{output_format}' ({', '.join(OUTPUT_SUFFIXES)})"
        )
    sources = images_by_case(inputs)
    names_a_file = is_nifti(output) or is_itk(output) or output.suffix.lower() == ".dcm"
    if output.suffix.lower() == ".dcm" and output_format != "dicom-seg" and not output.is_dir():
        raise NephrosegInputError(output, "a .dcm output is a DICOM-SEG: pass --format dicom-seg")
    if output_format == "dicom-seg":
        not_dicom = [str(path) for path in sources.values() if not path.is_dir()]
        if not_dicom:
            raise NephrosegInputError(not_dicom[0], "DICOM-SEG output needs a DICOM series as input")
        from nephroseg.io.dicom_seg import check_seg_source  # highdicom: only for DICOM SEG out

        for path in sources.values():
            check_seg_source(path)
    if len(sources) == 1 and names_a_file and not output.is_dir():
        if resume:
            raise NephrosegInputError(output, "--resume needs an output folder, not a file")
        case_id, source = next(iter(sources.items()))  # a KiTS case folder's source is its imaging file
        jobs = [PredictionJob(case_id, source, output)]
    else:
        if output.exists() and not output.is_dir():
            raise NephrosegInputError(output, "exists and is not a folder (give a folder for several inputs)")
        if not output.exists() and names_a_file:
            shown = listed(list(sources), 3)
            raise NephrosegInputError(
                output, f"{len(sources)} inputs ({shown}) need an output folder, not a file name"
            )
        jobs = [
            PredictionJob(case_id, path, output / f"{case_id}{OUTPUT_SUFFIXES[output_format]}")
            for case_id, path in sources.items()
        ]
    for job in jobs:  # checked before "pass --overwrite", which would replace the scan
        refuse_writing_into_source(job.source, job.target, "the labels would replace the scan")
    if inputs.is_dir() and output.is_dir():
        refuse_writing_into_source(
            inputs, output, "the labels would lie among the scans and be read as inputs by the next run"
        )
    if (
        output_format == "dicom-seg"
        and lies_inside(output, inputs)
        and not any(lies_inside(output, path) for path in sources.values())  # in a series: not read as CT
    ):
        raise NephrosegInputError(
            output,
            f"lies inside the input folder {inputs}: the next run would take its DICOM-SEG files for "
            "another patient's series; choose a folder outside it",
        )
    existing = [str(j.target) for j in jobs if j.target.exists()]
    if existing and not (overwrite or resume):
        raise NephrosegInputError(
            existing[0], f"output exists ({len(existing)} in all); pass --overwrite to replace"
        )
    for job in jobs:
        read_geometry(job.source)  # header-level checks for every input before the first prediction
    for target in {job.target for job in jobs}:
        check_writable(target)
    return jobs


def check_jobs_fit(
    jobs: list[PredictionJob], segmenter: Segmenter | VolumetricSegmenter | KidneyCropSegmenter, allowed: int
) -> None:
    """Refuse, before any prediction, a volume whose estimated peak memory exceeds ``allowed`` bytes:
    what the process holds already (Python, torch, the models: about 0.8 GB) plus what the volume
    adds, so that ``--max-memory 4GB`` bounds the whole process, as a machine's RAM does."""
    estimate = _estimator(segmenter)
    held = resident_bytes()
    for job in jobs:
        shape, spacing = canonical_shape_and_spacing(*read_geometry(job.source))
        check_memory(job.source, estimate(shape, spacing), allowed, held=held)


def _estimator(segmenter: Segmenter | VolumetricSegmenter | KidneyCropSegmenter):
    """Peak bytes for a (shape, spacing): a cascade's stages run in turn, the refine one on a box."""
    if isinstance(segmenter, KidneyCropSegmenter):
        coarse, fine = _estimator(segmenter.coarse), _slice_estimator(segmenter.fine)
        half = segmenter.half_width_mm

        def cascade(shape, spacing) -> int:
            inplane = zip(shape[1:], spacing[1:], strict=True)
            box = (shape[0], *(min(n, math.ceil(2 * half / s)) for n, s in inplane))
            return max(coarse(shape, spacing), fine(box, spacing))

        return cascade
    if isinstance(segmenter, VolumetricSegmenter):
        return _volumetric_estimator(segmenter)
    return _slice_estimator(segmenter)


def _slice_estimator(segmenter: Segmenter):
    """One member per model and zoom; each network's layer outputs are counted once, not per zoom."""
    members = []
    for m in segmenter.models:
        k, num_classes = m.recipe.model.in_slices, m.recipe.model.num_classes
        activations = _activations(m.network, lambda m=m, k=k: activations_per_pixel(m.network, k, m.divisor))
        for zoom in segmenter.scales:
            members.append((view_spacing(m, zoom), m.divisor, k, num_classes, activations))
    across = segmenter.tumor_across_slices
    return lambda shape, spacing: peak_bytes(shape, spacing, members, segmenter.batch_size, across)


def _volumetric_estimator(segmenter: VolumetricSegmenter):
    """The fine segmenter's estimate, or the coarse one's where it is larger (they run in turn)."""
    stages = [s for s in (segmenter, segmenter.coarse) if s is not None]
    activations = [
        max(_activations(m.network, lambda m=m: activations_per_voxel(m.network)) for m in s.models)
        for s in stages
    ]

    def estimate(shape, spacing) -> int:
        return max(
            volumetric_peak_bytes(
                shape,
                spacing,
                stage.target_spacing,
                stage.patch,
                chunk_slices=stage.chunk_slices,
                sw_batch_size=stage.batch_size,
                num_classes=stage.num_classes,
                activations=a * (2 if stage.mirror_tta else 1),
                members=len(stage.models),
            )
            for stage, a in zip(stages, activations, strict=True)
        )

    return estimate


def load_models(models: list[str | Path], device: torch.device) -> list[SegmentationModel]:
    """Every model the arguments name: a checkpoint file, a run folder (its best), a cross-validation
    folder (the best of each fold, so ``--model CV`` ensembles the folds), or an exported ``.onnx``
    file (run by onnxruntime)."""
    loaded = []
    for model in models:
        if is_onnx(model):
            loaded.append(load_onnx_model(model, device))
            continue
        for path in resolve_checkpoints(model):
            loaded.append(SegmentationModel.from_checkpoint(load_checkpoint(path, device), device))
    return loaded


def _activations(network: torch.nn.Module, count) -> float:
    """Layer outputs per input pixel: stored in an exported ONNX model, else counted by ``count()``."""
    stored = getattr(network, "activations", None)
    if stored is not None:
        return float(stored)
    return count() if any(True for _ in network.parameters()) else 0.0


def run_jobs(
    jobs: list[PredictionJob],
    segmenter: Segmenter,
    progress: bool = True,
    *,
    kept: int = 0,
    after_write: Callable[[Path], None] | None = None,
) -> list[Path]:
    """read → segment (preprocess, model, back to the source grid) → write, one case at a time.
    ``kept``: cases already done by an earlier run (shown as done in the progress bar);
    ``after_write`` is called with each file written (the folder's record of what made it)."""
    written: list[Path] = []
    with progress_bar(progress) as bar:
        task = bar.add_task("predict", total=len(jobs) + kept, completed=kept, status="")
        for job in jobs:
            bar.update(task, status=job.case_id)
            volume = read_volume(job.source)
            for problem in (orientation_warning(volume.source.header), hounsfield_warning(volume.array)):
                if problem:
                    warnings.warn(NephrosegInputWarning(job.source, problem), stacklevel=2)
            labels = segmenter.segment(volume.array, volume.spacing)
            if job.target.name.endswith(".dcm"):
                from nephroseg.io.dicom_seg import write_dicom_seg  # highdicom: only for DICOM SEG out

                source_order = volume.to_source_orientation(labels)
                written.append(write_dicom_seg(source_order, job.source, job.target))
            else:
                written.append(write_like(labels, volume, job.target))
            if after_write is not None:
                after_write(written[-1])
            bar.advance(task)
    return written


def predict(
    inputs: str | Path,
    output: str | Path,
    models: list[str | Path],
    *,
    device: str = "cpu",
    batch_size: int = 8,
    tta: bool | None = None,
    overwrite: bool = False,
    progress: bool = True,
    max_memory: int | str | None = None,
    threads: int | None = None,
    coarse_models: list[str | Path] | None = None,
    output_format: str = "nifti",
    precision: str = "auto",
    resume: bool = False,
) -> list[Path]:
    """Segment every volume in ``inputs`` (a NIfTI file, a folder of them, or a KiTS dataset folder)
    with one model or the average of several; write uint8 label maps on each source's own grid.
    ``max_memory`` (bytes, or a size such as '4GB') refuses volumes estimated not to fit.
    3D models segment by sliding windows (``inference.sliding``); ``coarse_models`` first find the
    kidneys at low resolution. ``tta`` None keeps the recipe's mirroring choice. ``threads`` caps the
    CPU threads torch uses. ``precision`` 'auto' runs the networks under bfloat16 autocast on a CPU that
    computes it natively, float16 autocast on CUDA, else float32 (``runtime.resolve_precision``).
    ``resume`` keeps the labels an interrupted run into the same folder wrote (with the same models and
    settings, checked against the folder's record) and predicts the rest.
    Returns the files written by this call."""
    if not models:
        raise NephrosegInputError("--model", "give at least one run folder or checkpoint")
    torch_device = resolve_device(device)
    precision = resolve_precision(precision, torch_device)
    allowed = parse_size(max_memory) if max_memory is not None else None
    jobs = plan_outputs(inputs, output, overwrite, output_format, resume)
    pending, on_write = jobs, None
    folder = _output_folder(jobs, output)
    if folder is not None:  # a folder of outputs carries the record that --resume checks
        record = prediction_record(models, coarse_models, tta, precision, output_format)
        if resume:
            pending = [job for job in jobs if not job.target.exists()]
            check_resumable(folder, record, existing=[job.target for job in jobs if job.target.exists()])
            if not pending:
                return []
        on_write = partial(record_label, folder, record)
    if threads:
        torch.set_num_threads(threads)
    coarse = load_models(coarse_models, torch_device) if coarse_models else None
    segmenter = make_segmenter(
        load_models(models, torch_device),
        torch_device,
        batch_size=batch_size,
        tta=tta,
        coarse_models=coarse,
        precision=precision,
    )
    if allowed is not None:
        check_jobs_fit(pending, segmenter, allowed)
    return run_jobs(pending, segmenter, progress, kept=len(jobs) - len(pending), after_write=on_write)


def _output_folder(jobs: list[PredictionJob], output: str | Path) -> Path | None:
    """The folder the outputs go to, which holds the prediction record; None for one output file."""
    output = Path(output)
    return output if all(job.target.parent == output for job in jobs) else None
