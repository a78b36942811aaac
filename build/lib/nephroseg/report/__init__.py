"""Reports for people: clinical measurements, pictures and a Markdown summary of a run.

``measure`` turns a canonical label map into volumes (ml), tumor findings (size, side, slices) and
per-kidney volumes; ``plots`` draws training curves and CT overlays; ``markdown`` writes the report
that ties scores, measurements and figures together, and ``tables`` the same measurements as CSV;
``viewer`` writes a self-contained HTML page per case to scroll through in a browser. Numpy, scipy,
matplotlib (Agg) and Pillow only, no torch, and every file is written atomically.
"""

from nephroseg.report.markdown import CaseReport, summarize_scores, write_report_md
from nephroseg.report.measure import (
    TumorFinding,
    kidney_side_volumes_ml,
    max_axial_diameter_mm,
    max_diameter_mm,
    structure_volumes_ml,
    tumor_detection,
    tumor_findings,
)
from nephroseg.report.plots import (
    OverlayCase,
    error_slice,
    overlay_grid_png,
    overlay_png,
    pick_slice,
    read_training_log,
    training_curves_png,
)
from nephroseg.report.tables import write_measurement_tables

__all__ = [
    "CaseReport",
    "OverlayCase",
    "TumorFinding",
    "error_slice",
    "kidney_side_volumes_ml",
    "max_axial_diameter_mm",
    "max_diameter_mm",
    "overlay_grid_png",
    "overlay_png",
    "pick_slice",
    "read_training_log",
    "structure_volumes_ml",
    "summarize_scores",
    "training_curves_png",
    "tumor_detection",
    "tumor_findings",
    "write_measurement_tables",
    "write_report_md",
]
