"""Write a synthetic cohort in the exact KiTS19 layout, resumably, with a kits.json beside it."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from nephroseg.errors import NephrosegInputError
from nephroseg.io.atomic import refuse_writing_into_source
from nephroseg.io.kits import (
    CASE_PATTERN,
    IMAGING_NAME,
    SEGMENTATION_NAME,
    ClinicalRecord,
    read_kits_json,
    write_kits_json,
)
from nephroseg.io.lock import folder_held
from nephroseg.io.volume import (
    canonical_shape_and_spacing,
    read_geometry,
    read_volume,
    same_stored_grid,
    write_array,
    write_like,
)
from nephroseg.synth.anatomy import Patient, draw_patient
from nephroseg.synth.config import SynthConfig
from nephroseg.synth.measure import radiographic_size_cm
from nephroseg.synth.paint import mask_case_identity, paint_case_from_mask
from nephroseg.synth.phantom import CaseInfo, generate_case, plan_info, planned_grid, seed_sequence

KITS_JSON = "kits.json"


def synthesize_cohort(
    out_dir: str | Path,
    n_cases: int,
    seed: int,
    config: SynthConfig | None = None,
    from_masks: str | Path | None = None,
    start_index: int = 0,
    progress: bool = True,
    workers: int = 1,
) -> list[Path]:
    """Write ``out_dir/case_NNNNN/{imaging,segmentation}.nii.gz`` and ``out_dir/kits.json``.

    Procedural cases are numbered from ``start_index``; case i is generated from (``seed``, i), so
    a cohort can be grown or resumed and every case comes out identical. A case whose two files
    already exist is skipped. With ``from_masks`` every ``case_NNNNN/segmentation.nii.gz`` found
    there is painted (the ``start_index``-th onward, at most ``n_cases``), keeping its case id,
    voxels and affine; an accompanying ``kits.json`` there supplies the subtype, sex, age and BMI.
    ``workers`` > 1 generates cases in that many processes; every case depends on its own seed
    only, so the files are the same whatever the number. Returns the case folders, in order.
    """
    config = config or SynthConfig()
    if isinstance(n_cases, bool) or not isinstance(n_cases, int) or n_cases < 0:
        raise ValueError(f"n_cases must be a non-negative integer, got {n_cases!r}")
    if isinstance(start_index, bool) or not isinstance(start_index, int) or start_index < 0:
        raise ValueError(f"start_index must be a non-negative integer, got {start_index!r}")
    seed_sequence(seed)  # validates the seed before any work
    out_dir = Path(out_dir)
    if from_masks is not None:
        refuse_writing_into_source(from_masks, out_dir, "its kits.json would take the painted cases' records")
    if out_dir.exists() and not out_dir.is_dir():
        raise NephrosegInputError(out_dir, "output exists and is not a folder")
    if from_masks is None:
        jobs = [(f"case_{i:05d}", None) for i in range(start_index, start_index + n_cases)]
        sources: dict[str, ClinicalRecord] = {}
    else:
        masks = _find_masks(Path(from_masks))[start_index : start_index + n_cases]
        jobs = [(path.parent.name, path) for path in masks]
        source_json = Path(from_masks) / KITS_JSON
        sources = read_kits_json(source_json) if source_json.exists() else {}

    out_dir.mkdir(parents=True, exist_ok=True)
    existing = read_kits_json(out_dir / KITS_JSON) if (out_dir / KITS_JSON).exists() else {}
    records = dict(existing)
    folders = [out_dir / case_id for case_id, _ in jobs]
    to_write = []
    with _progress(progress, len(jobs)) as advance:
        for case_id, mask_path in jobs:
            folder = out_dir / case_id
            case_seed = seed_sequence(seed, int(case_id.split("_")[1]))
            if (folder / IMAGING_NAME).exists() and (folder / SEGMENTATION_NAME).exists():
                if not _on_planned_grid(folder / IMAGING_NAME, case_seed, config, mask_path):
                    raise NephrosegInputError(
                        folder,
                        "is a complete case on another grid than this run makes (another --seed, --size or "
                        "masks?): kept cases would mix two cohorts; choose another --out",
                    )
                if case_id not in records:
                    records[case_id] = _record_from_files(
                        case_id,
                        folder / SEGMENTATION_NAME,
                        case_seed,
                        config,
                        mask_path is not None,
                        sources.get(case_id),
                    )
                advance(case_id)
            else:
                foreign = _foreign_files(folder, case_seed, config, mask_path)
                if foreign:
                    raise NephrosegInputError(
                        folder,
                        f"holds {foreign}: not a case synth began (a real dataset's test case?); "
                        "choose another --out, or remove the folder to generate it",
                    )
                to_write.append((folder, case_seed, config, mask_path, sources.get(case_id)))
        for case_id, record in _written(to_write, workers):
            records[case_id] = record
            _merge_kits_json(out_dir, records)
            advance(case_id)
    if not to_write:
        _merge_kits_json(out_dir, records)
    return folders


def _foreign_files(
    folder: Path, case_seed: np.random.SeedSequence, config: SynthConfig, mask_path: Path | None
) -> str | None:
    """What in an incomplete case folder synth did not write, or None. Synth writes the imaging
    first, so a segmentation alone is not its; an imaging alone is its (interrupted before the
    segmentation) only on the grid this seed plans, or the mask's when painting."""
    imaging, segmentation = folder / IMAGING_NAME, folder / SEGMENTATION_NAME
    if segmentation.exists():
        return "a segmentation without its imaging"
    if not imaging.exists():
        return None
    if _on_planned_grid(imaging, case_seed, config, mask_path):
        return None
    return "an imaging.nii.gz on another grid than the case this seed makes"


def _on_planned_grid(
    imaging: Path, case_seed: np.random.SeedSequence, config: SynthConfig, mask_path: Path | None
) -> bool:
    """Whether an imaging file lies on the grid this seed and config plan (or the mask's, painting)."""
    found = read_geometry(imaging)
    if mask_path is not None:
        return same_stored_grid(found, read_geometry(mask_path))
    planned_shape, planned_spacing = planned_grid(case_seed, config)
    found_shape, found_spacing = canonical_shape_and_spacing(*found)
    return found_shape == planned_shape and bool(np.allclose(found_spacing, planned_spacing, rtol=1e-5))


def _merge_kits_json(out_dir: Path, records: dict[str, ClinicalRecord]) -> None:
    """``kits.json`` as it stands now with this run's records merged in, under the folder's lock: two
    runs generating other case ranges into one folder at once both keep their records (each used to
    write the file it had read at its start, dropping the other's)."""
    with folder_held(out_dir):
        path = out_dir / KITS_JSON
        merged = {**(read_kits_json(path) if path.exists() else {}), **records}
        write_kits_json(path, [merged[k] for k in sorted(merged)])


def _written(tasks: list[tuple], workers: int) -> Iterator[tuple[str, ClinicalRecord]]:
    """(case id, record) for each case as it is written: in order in this process, or as they finish
    in ``workers`` processes (spawned: the parent may hold torch's threads, which fork would copy)."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield task[0].name, _write_case(*task)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context) as pool:
        futures = {pool.submit(_write_case, *task): task[0].name for task in tasks}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:  # a failed case or an interrupt: do not wait for the others
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _find_masks(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise NephrosegInputError(folder, "mask folder not found")
    masks = sorted(
        p / SEGMENTATION_NAME
        for p in folder.iterdir()
        if p.is_dir() and CASE_PATTERN.match(p.name) and (p / SEGMENTATION_NAME).exists()
    )
    if not masks:
        raise NephrosegInputError(
            folder, f"no case_NNNNN/{SEGMENTATION_NAME} found (expected the KiTS19 layout)"
        )
    return masks


def _write_case(
    folder: Path,
    case_seed: np.random.SeedSequence,
    config: SynthConfig,
    mask_path: Path | None,
    source: ClinicalRecord | None,
) -> ClinicalRecord:
    """Generate (or paint) one case and write segmentation last: both present means complete."""
    if mask_path is None:
        case = generate_case(case_seed, config)
        write_array(case.image, case.affine, folder / IMAGING_NAME, np.int16)
        write_array(case.label, case.affine, folder / SEGMENTATION_NAME, np.uint8)
    else:
        mask = read_volume(mask_path, label=True)
        patient, subtype = _from_source(source, case_seed)
        case = paint_case_from_mask(mask, case_seed, config, patient=patient, subtype=subtype)
        write_like(case.image, mask, folder / IMAGING_NAME, np.int16)
        write_like(mask.array, mask, folder / SEGMENTATION_NAME, np.uint8)
    return clinical_record(folder.name, case.info, case.label, case.spacing)


def _from_source(
    source: ClinicalRecord | None, case_seed: np.random.SeedSequence
) -> tuple[Patient | None, str | None]:
    """Patient and subtype from the real kits.json where it has them (missing values are drawn)."""
    if source is None:
        return None, None
    drawn = draw_patient(np.random.default_rng(seed_sequence(case_seed, 999)))
    patient = Patient(
        gender=source.gender if source.gender in ("male", "female") else drawn.gender,
        age=source.age_at_nephrectomy if source.age_at_nephrectomy is not None else drawn.age,
        bmi=source.body_mass_index if source.body_mass_index is not None else drawn.bmi,
    )
    subtype = source.tumor_histologic_subtype
    return patient, subtype  # any kits.json subtype paints; unfamiliar ones get a generic look


def clinical_record(
    case_id: str, info: CaseInfo, label: np.ndarray, spacing: tuple[float, float, float]
) -> ClinicalRecord:
    """The kits.json entry for a case: what was drawn or painted, the size measured on the label."""
    sz, sy, sx = (float(np.float32(s)) for s in spacing)  # as the NIfTI header stores them
    return ClinicalRecord(
        case_id=case_id,
        age_at_nephrectomy=info.patient.age,
        gender=info.patient.gender,
        body_mass_index=info.patient.bmi,
        radiographic_size=radiographic_size_cm(label, spacing),
        malignant=info.malignant,
        tumor_histologic_subtype=info.subtype,
        tumor_necrosis=any(t.necrosis for t in info.tumors) if info.tumors else None,
        voxel_spacing={"x_spacing": sx, "y_spacing": sy, "z_spacing": sz},
    )


def _record_from_files(
    case_id: str,
    segmentation: Path,
    case_seed: np.random.SeedSequence,
    config: SynthConfig,
    from_mask: bool,
    source: ClinicalRecord | None,
) -> ClinicalRecord:
    """A skipped case's entry, rebuilt without regenerating it: the label is measured and the
    patient and subtype re-drawn from the same seed."""
    label = read_volume(segmentation, label=True)
    if not from_mask:
        return clinical_record(case_id, plan_info(case_seed, config), label.array, label.spacing)
    patient, subtype = _from_source(source, case_seed)
    patient, subtype = mask_case_identity(case_seed, patient, subtype, bool((label.array == 2).any()))
    info = CaseInfo(patient, "", subtype, (), (), 0, 0.0, label.spacing[0])
    record = clinical_record(case_id, info, label.array, label.spacing)
    return record.model_copy(update={"tumor_necrosis": None})  # only known once painted


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator:
    if not enabled:
        yield lambda case_id: None
        return
    columns = (
        TextColumn("[bold]synthesizing[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("", total=total)

        def advance(case_id: str) -> None:
            bar.update(task, advance=1, description=case_id)

        yield advance
