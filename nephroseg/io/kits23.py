"""KiTS21 and KiTS23 datasets in the KiTS19 task's labels, so that they train and score here.

Both ship the KiTS19 layout (``case_NNNNN/imaging.nii.gz``) with a fourth label, 3 for cysts, that
KiTS19 counted as kidney: the import relabels 3 as 1. KiTS23 names the label map
``segmentation.nii.gz``, KiTS21 ``aggregated_MAJ_seg.nii.gz`` (the majority vote of its
annotators). Imaging is hard-linked where the file system allows, never changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nephroseg.errors import NephrosegInputError
from nephroseg.io.atomic import link_or_copy, refuse_writing_into_source
from nephroseg.io.kits import IMAGING_NAME, SEGMENTATION_NAME, find_cases
from nephroseg.io.volume import Volume, read_volume, write_like
from nephroseg.progress import progress_bar

CYST = 3
KIDNEY = 1
LABEL_NAMES = (SEGMENTATION_NAME, "aggregated_MAJ_seg.nii.gz")  # KiTS23, then KiTS21


@dataclass(frozen=True)
class KitsImport:
    cases: list[Path]  # the case folders written (or kept)
    labelled: int  # of which with a label map
    cyst_voxels: int  # relabelled from cyst (3) to kidney (1) in this run
    kept: int = 0  # cases an earlier, interrupted run had written whole (``resume``)


def import_kits23(
    data_dir: str | Path,
    out_dir: str | Path,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = False,
) -> KitsImport:
    """Write ``out_dir/case_NNNNN/{imaging,segmentation}.nii.gz`` in KiTS19 labels. ``resume`` keeps
    the cases an interrupted run wrote whole (every file written atomically: a case holding all of
    its files is complete) and writes the rest, a half-written case again."""
    if overwrite and resume:
        raise NephrosegInputError(
            "--resume", "keeps the cases written, --overwrite rewrites them: choose one"
        )
    out_dir = Path(out_dir)
    refuse_writing_into_source(data_dir, out_dir, "its imaging and labels would be replaced as they are read")
    cases = find_cases(data_dir)
    folders, labelled, cyst_voxels, kept = [], 0, 0, 0
    with progress_bar(progress) as bar:
        task = bar.add_task("import", total=len(cases), status="")
        for case in cases:
            bar.update(task, status=case.case_id)
            target = out_dir / case.case_id
            source = _label_source(case.folder)
            existing = [
                target / name for name in (IMAGING_NAME, SEGMENTATION_NAME) if (target / name).exists()
            ]
            if resume and len(existing) == (1 if source is None else 2):  # written whole
                folders.append(target)
                kept += 1
                labelled += source is not None
                bar.advance(task)
                continue
            if existing and not (overwrite or resume):
                raise NephrosegInputError(
                    existing[0],
                    "exists; pass --resume to keep the cases written, --overwrite to rewrite them",
                )
            cyst_voxels += _write_case(case.imaging, source, target, existing)
            labelled += source is not None
            folders.append(target)
            bar.advance(task)
    return KitsImport(folders, labelled, cyst_voxels, kept)


def _write_case(imaging: Path, source: Path | None, target: Path, existing: list[Path]) -> int:
    """Link the imaging and write the relabelled map (checked before anything is replaced); returns
    the cyst voxels relabelled."""
    relabelled = _kits19_labels(source) if source is not None else None
    for path in existing:
        path.unlink()
    link_or_copy(imaging, target / IMAGING_NAME)
    if relabelled is None:
        return 0
    labels, volume, cysts = relabelled
    write_like(labels, volume, target / SEGMENTATION_NAME)
    return cysts


def _label_source(folder: Path) -> Path | None:
    """The case's label map: KiTS23's name, else KiTS21's majority vote; None for a test case."""
    return next((folder / name for name in LABEL_NAMES if (folder / name).is_file()), None)


def _kits19_labels(source: Path) -> tuple[np.ndarray, Volume, int]:
    """The canonical label map with cysts as kidney, its volume (for the grid) and the cyst voxels."""
    volume = read_volume(source)  # as intensities: label 3 is refused by a KiTS19 label read
    values = volume.array
    if not np.array_equal(values, np.round(values)) or values.min() < 0 or values.max() > CYST:
        stray = np.unique(values[(values != np.round(values)) | (values < 0) | (values > CYST)])[:8]
        shown = ", ".join(f"{v:g}" for v in stray)
        raise NephrosegInputError(source, f"label values outside {{0, 1, 2, 3}}: {shown}")
    labels = values.astype(np.uint8)
    cysts = labels == CYST
    labels[cysts] = KIDNEY
    return labels, volume, int(np.count_nonzero(cysts))
