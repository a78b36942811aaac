"""``nephroseg report``: measurements, overlays, curves and report.md for a folder of predictions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from nephroseg.errors import NephrosegInputError
from nephroseg.io import Volume, read_kits_json, read_volume
from nephroseg.io.atomic import refuse_file_where_a_folder_goes, refuse_replacing_foreign_files, staged_folder
from nephroseg.io.dicom import series_summary
from nephroseg.io.kits import check_same_grid
from nephroseg.io.listing import images_by_case, labels_by_case
from nephroseg.metrics import case_metrics
from nephroseg.progress import progress_bar
from nephroseg.report.markdown import CaseReport, write_report_md
from nephroseg.report.plots import (
    OverlayCase,
    error_slice,
    is_report_figure,
    overlay_grid_png,
    overlay_png,
    pick_slice,
    training_curves_png,
)
from nephroseg.report.tables import CASE_COLUMNS, TUMOR_COLUMNS, write_measurement_tables
from nephroseg.report.viewer import is_viewer_page, viewer_html

SECOND_ROW_GAP_MM = 10.0  # the error row's slice lies at least this far from the largest tumor's


def build_report(
    pred_dir: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    *,
    gt_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    coarse_run_dir: str | Path | None = None,
    kits_json: str | Path | None = None,
    viewer: bool = True,
    progress: bool = True,
) -> Path:
    """Write ``out_dir/report.md`` with ``figures/``: one overlay per case (prediction against
    ground truth when given), the training curves of ``run_dir`` when given, volumes and tumor
    sizes measured on the prediction, and Dice when ground truth exists. ``coarse_run_dir``: the
    coarse stage that found the kidneys for ``run_dir`` (a cascade), named in the run table.
    ``viewer``: also a page per case in ``viewer/`` to scroll through its slices in a browser.
    The measurements also go to ``cases.csv`` and ``tumors.csv``."""
    out_dir = Path(out_dir)
    refuse_file_where_a_folder_goes(out_dir, "--out names the report's folder")
    for option, folder in (("--run", run_dir), ("--coarse-run", coarse_run_dir)):
        if folder is not None and not Path(folder).is_dir():
            raise NephrosegInputError(folder, f"no such training run folder ({option})")
    predictions = labels_by_case(pred_dir)
    images = images_by_case(images_dir)
    truths = labels_by_case(gt_dir) if gt_dir is not None else {}
    missing = sorted(set(predictions) - set(images))
    if missing:
        raise NephrosegInputError(images_dir, f"no image for predicted case(s): {', '.join(missing[:5])}")
    _refuse_replacing_foreign_files(out_dir, list(predictions), run_dir is not None, viewer)
    sizes = _radiographic_sizes(kits_json, images_dir)
    with staged_folder(out_dir) as stage:  # a failure leaves the folder as it was
        figures: dict[str, Path] = {}
        summary: dict[str, object] = {"predictions": str(pred_dir), "cases": len(predictions)}
        if run_dir is not None:
            run_dir = Path(run_dir)
            if (run_dir / "log.csv").exists():
                figures["training curves"] = training_curves_png(
                    run_dir / "log.csv", stage / "figures" / "curves.png"
                )
            if (run_dir / "summary.json").exists():
                run = json.loads((run_dir / "summary.json").read_text())
                keys = ("recipe", "model", "parameters", "best_val_composite_dice")
                summary.update({k: run[k] for k in keys if k in run})
        if coarse_run_dir is not None:
            summary["coarse stage (finds the kidneys)"] = str(coarse_run_dir)
        reports = []
        with progress_bar(progress) as bar:
            task = bar.add_task("report", total=len(predictions), status="")
            for case_id, pred_path in predictions.items():
                bar.update(task, status=case_id)
                image = read_volume(images[case_id])
                prediction = read_volume(pred_path, label=True, on_grid_of=image)
                check_same_grid(images[case_id], pred_path, *image.stored_grid, *prediction.stored_grid)
                truth = None
                if case_id in truths:
                    found = read_volume(truths[case_id], label=True, on_grid_of=image)
                    check_same_grid(images[case_id], truths[case_id], *image.stored_grid, *found.stored_grid)
                    truth = found.array
                overlay = _case_overlay(
                    image, truth, prediction.array, stage / "figures" / f"{case_id}.png", case_id
                )
                page = None
                if viewer:
                    page = viewer_html(
                        image.array,
                        stage / "viewer" / f"{case_id}.html",
                        prediction=prediction.array,
                        truth=truth,
                        spacing=image.spacing,
                        title=case_id,
                    )
                source = series_summary(images[case_id]) if images[case_id].is_dir() else None
                reports.append(
                    CaseReport.from_label(
                        case_id,
                        prediction.array,
                        image.spacing,
                        metrics=case_metrics(prediction.array, truth) if truth is not None else None,
                        radiographic_size_cm=sizes.get(case_id),
                        overlay=overlay,
                        viewer=page,
                        source=source,
                        truth=truth,
                    )
                )
                bar.advance(task)
        tables = write_measurement_tables(stage, reports)
        write_report_md(stage / "report.md", reports, summary, figures, tables=tables)
    return out_dir / "report.md"


def _refuse_replacing_foreign_files(out_dir: Path, case_ids: list[str], curves: bool, viewer: bool) -> None:
    """Before any work: a report.md, table, figure or page of the names this report writes that an
    earlier report did not write is the user's own, and is not replaced."""
    beginnings = {
        out_dir / "report.md": "# nephroseg",
        out_dir / "cases.csv": ",".join(CASE_COLUMNS[:2]) + ",",
        out_dir / "tumors.csv": ",".join(TUMOR_COLUMNS[:2]) + ",",
    }
    refuse_replacing_foreign_files(beginnings, "nephroseg report")
    figures = [out_dir / "figures" / f"{case_id}.png" for case_id in case_ids]
    figures += [out_dir / "figures" / "curves.png"] if curves else []
    pages = [out_dir / "viewer" / f"{case_id}.html" for case_id in case_ids] if viewer else []
    for paths, ours, what in ((figures, is_report_figure, "figure"), (pages, is_viewer_page, "viewer page")):
        for path in paths:
            if path.exists() and not (path.is_file() and ours(path)):
                problem = (
                    f"exists and is not a nephroseg report {what}; not overwritten: choose another --out"
                )
                raise NephrosegInputError(path, problem)


def _case_overlay(
    image: Volume, truth: np.ndarray | None, prediction: np.ndarray, out_png: Path, case_id: str
) -> Path:
    """The largest tumor's slice; with ground truth, a second row at the slice where the prediction is
    most wrong at least ``SECOND_ROW_GAP_MM`` away (a large false tumor is otherwise out of the
    picture; a slice next to the first would show the same)."""
    shown = pick_slice(truth, prediction)
    gap = math.ceil(SECOND_ROW_GAP_MM / image.spacing[0])
    near = slice(max(0, shown - gap + 1), shown + gap)
    worst = error_slice(truth, prediction, skip=near) if truth is not None else None
    if worst is None:
        return overlay_png(image.array, truth, prediction, out_png, case_id, image.spacing, shown)
    rows = [
        OverlayCase(f"{case_id} · largest tumor", image.array, truth, prediction, image.spacing, shown),
        OverlayCase(f"{case_id} · largest error", image.array, truth, prediction, image.spacing, worst),
    ]
    return overlay_grid_png(rows, out_png)


def _radiographic_sizes(kits_json: str | Path | None, images_dir: str | Path) -> dict[str, float]:
    """kits.json's tumor size per case, from the given file or the one beside the images."""
    path = Path(kits_json) if kits_json else Path(images_dir) / "kits.json"
    if not path.exists():
        if kits_json:
            raise NephrosegInputError(path, "file not found")
        return {}
    return {
        cid: r.radiographic_size for cid, r in read_kits_json(path).items() if r.radiographic_size is not None
    }
