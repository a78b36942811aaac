"""Pictures for people: training curves and CT overlays, written atomically as PNG.

Figures are built with matplotlib's object API (``Figure``) and rendered by Agg: no pyplot, so no
global figure state and no GUI backend, whatever backend the calling process has chosen.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from nephroseg.errors import NephrosegInputError
from nephroseg.io.atomic import atomic_path
from nephroseg.metrics.overlap import dice

DPI = 100
FIGURE_MARK = "nephroseg report"  # the PNG text chunk that names the figures as ours
CURVES_FIGSIZE = (11.0, 4.2)  # inches: 1100 x 420 px at DPI
PANEL_INCHES = 4.0  # each CT panel is square-ish; the overlay adds room for the title and legend
OVERLAY_EXTRA_HEIGHT = 0.9
ABDOMEN_WINDOW = (-160.0, 240.0)  # HU: level 40, width 400
KIDNEY_COLOR = "#56B4E9"  # Okabe-Ito sky blue and orange: distinct for colour-blind readers, visible on grey
TUMOR_COLOR = "#E69F00"
TRUTH_STYLE, PREDICTION_STYLE = "solid", "dashed"
VAL_SERIES = (
    ("val_composite_dice", "composite (KiTS score)", "black"),
    ("val_kidney_tumor_dice", "kidney+tumor", KIDNEY_COLOR),
    ("val_tumor_dice", "tumor", TUMOR_COLOR),
)


# ---- training curves ---------------------------------------------------------------------------


def read_training_log(log_csv: str | Path) -> dict[str, np.ndarray]:
    """Columns of a training log as float arrays; empty cells become NaN (validation runs only on
    some rows). Raises NephrosegInputError for a log that cannot be drawn."""
    path = Path(log_csv)
    if not path.is_file():
        raise NephrosegInputError(path, "training log not found")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        if "train_loss" not in header or not {"step", "epoch"} & set(header):
            raise NephrosegInputError(
                path, f"not a training log: needs train_loss and step or epoch, has {header}"
            )
        rows = list(reader)
    if not rows:
        raise NephrosegInputError(path, "training log has a header but no rows")
    columns: dict[str, np.ndarray] = {}
    for name in header:
        values = []
        for line, row in enumerate(rows, start=2):
            cell = (row.get(name) or "").strip()
            try:
                values.append(float(cell) if cell else math.nan)
            except ValueError:
                raise NephrosegInputError(path, f"line {line}: {name}={cell!r} is not a number") from None
        columns[name] = np.asarray(values, dtype=np.float64)
    return columns


def training_curves_png(log_csv: str | Path, out_png: str | Path) -> Path:
    """Loss (with learning rate) and validation Dice over training, side by side."""
    log = read_training_log(log_csv)
    x_name = "step" if "step" in log and np.all(np.isfinite(log["step"])) else "epoch"
    x = log[x_name]
    fig = Figure(figsize=CURVES_FIGSIZE, dpi=DPI, layout="constrained")
    loss_ax, dice_ax = fig.subplots(1, 2)
    _draw_loss(loss_ax, x, log, x_name)
    _draw_dice(dice_ax, x, log, x_name)
    fig.suptitle(f"Training: {Path(log_csv).name}")
    return _save_png(fig, out_png)


def _draw_loss(ax: Axes, x: np.ndarray, log: dict[str, np.ndarray], x_name: str) -> None:
    _plot_finite(ax, x, log["train_loss"], color="black", label="train loss")
    ax.set(title="Training loss", xlabel=x_name, ylabel="loss")
    ax.grid(alpha=0.3)
    handles = list(ax.get_lines())
    lr = log.get("lr")
    if lr is not None and np.any(np.isfinite(lr)):
        lr_ax = ax.twinx()
        _plot_finite(lr_ax, x, lr, color="grey", linestyle="dotted", label="learning rate")
        lr_ax.set_ylabel("learning rate", color="grey")
        if np.all(lr[np.isfinite(lr)] > 0):
            lr_ax.set_yscale("log")
        handles += lr_ax.get_lines()
    ax.legend(handles=handles, loc="upper right")


def _draw_dice(ax: Axes, x: np.ndarray, log: dict[str, np.ndarray], x_name: str) -> None:
    ax.set(title="Validation Dice", xlabel=x_name, ylabel="Dice", ylim=(0.0, 1.02))
    ax.grid(alpha=0.3)
    drawn = False
    for column, label, color in VAL_SERIES:
        if column in log and np.any(np.isfinite(log[column])):
            _plot_finite(
                ax, x, log[column], color=color, label=label, linewidth=2.0 if "composite" in column else 1.3
            )
            drawn = True
    if not drawn:
        ax.text(
            0.5, 0.5, "no validation scores in the log yet", ha="center", va="center", transform=ax.transAxes
        )
        if np.any(np.isfinite(x)):
            ax.set_xlim(np.nanmin(x) - 1, np.nanmax(x) + 1)
        return
    composite = log.get("val_composite_dice")
    if composite is not None and np.any(np.isfinite(composite)):
        best = int(np.nanargmax(composite))
        ax.plot(
            [x[best]],
            [composite[best]],
            marker="*",
            markersize=14,
            color="crimson",
            linestyle="none",
            label=f"best composite {composite[best]:.3f} ({x_name} {x[best]:g})",
        )
    ax.legend(loc="lower right")


def _plot_finite(ax: Axes, x: np.ndarray, y: np.ndarray, **style: object) -> None:
    """Plot only the finite points, with markers, so sparse validation rows still show."""
    keep = np.isfinite(x) & np.isfinite(y)
    ax.plot(x[keep], y[keep], marker="o", markersize=3, **style)


# ---- CT overlays -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class OverlayCase:
    """One case for ``overlay_grid_png``: canonical arrays of the same shape (truth or prediction may
    be None) and the voxel spacing for the pixel aspect."""

    title: str
    image_hu: np.ndarray
    truth: np.ndarray | None
    prediction: np.ndarray | None
    spacing: Sequence[float] | None = None
    slice_index: int | None = None


def pick_slice(truth: np.ndarray | None, prediction: np.ndarray | None) -> int:
    """The axial slice worth showing: largest tumor area in the truth, else in the prediction, else
    the largest kidney area (truth first), else the middle slice."""
    present = [m for m in (truth, prediction) if m is not None]
    if not present:
        raise ValueError("need a ground truth or a prediction to pick a slice")
    for wanted in (lambda m: m == 2, lambda m: m > 0):
        for mask in present:
            area = np.count_nonzero(wanted(np.asarray(mask)), axis=(1, 2))
            if area.max() > 0:
                return int(area.argmax())
    return present[0].shape[0] // 2


def error_slice(truth: np.ndarray, prediction: np.ndarray, skip: slice | None = None) -> int | None:
    """The axial slice where the prediction is most wrong: most voxels on which truth and prediction
    disagree about tumor, else about kidney+tumor; None where they agree everywhere. ``skip``: slices
    not to consider (those around one already shown). The slice of ``pick_slice`` shows the largest
    tumor, which can hide a large false one elsewhere."""
    truth, prediction = np.asarray(truth), np.asarray(prediction)
    for threshold in (1, 0):  # tumor (label > 1), then kidney+tumor (label > 0)
        wrong = np.count_nonzero((truth > threshold) != (prediction > threshold), axis=(1, 2))
        if skip is not None:
            wrong[skip] = 0
        if wrong.max() > 0:
            return int(wrong.argmax())
    return None


def overlay_png(
    image_hu: np.ndarray,
    truth: np.ndarray | None,
    prediction: np.ndarray | None,
    out_png: str | Path,
    title: str,
    spacing: Sequence[float] | None = None,
    slice_index: int | None = None,
    window: tuple[float, float] = ABDOMEN_WINDOW,
) -> Path:
    """One axial slice as [CT | CT + truth | CT + prediction] with kidney and tumor contours (truth
    solid, prediction dashed); panels without data are left out."""
    case = OverlayCase(title, image_hu, truth, prediction, spacing, slice_index)
    image, truth, prediction, z = _checked_case(case)
    panels = 1 + (truth is not None) + (prediction is not None)
    fig = Figure(
        figsize=(PANEL_INCHES * panels, PANEL_INCHES + OVERLAY_EXTRA_HEIGHT), dpi=DPI, layout="constrained"
    )
    axes = list(np.atleast_1d(fig.subplots(1, panels)))
    _draw_case(axes, image[z], _slice(truth, z), _slice(prediction, z), case.spacing, window, full_row=False)
    fig.suptitle(f"{title} · slice {z}" + _slice_dice_text(truth, prediction, z, sep=" · "))
    fig.legend(
        handles=_contour_legend(truth is not None, prediction is not None),
        loc="outside lower center",
        ncols=4,
    )
    return _save_png(fig, out_png)


def overlay_grid_png(
    cases: Sequence[OverlayCase], out_png: str | Path, window: tuple[float, float] = ABDOMEN_WINDOW
) -> Path:
    """Several cases in one picture, one row each: [CT | CT + truth | CT + prediction]."""
    if not cases:
        raise ValueError("overlay grid needs at least one case")
    fig = Figure(
        figsize=(PANEL_INCHES * 3, PANEL_INCHES * len(cases) + OVERLAY_EXTRA_HEIGHT / 2),
        dpi=DPI,
        layout="constrained",
    )
    grid = np.atleast_2d(fig.subplots(len(cases), 3))
    any_truth = any_prediction = False
    for row, case in zip(grid, cases, strict=True):
        image, truth, prediction, z = _checked_case(case)
        any_truth |= truth is not None
        any_prediction |= prediction is not None
        _draw_case(
            list(row), image[z], _slice(truth, z), _slice(prediction, z), case.spacing, window, full_row=True
        )
        row[0].set_title(f"{case.title} · slice {z}", fontsize=10)
        row[2].set_title("prediction" + _slice_dice_text(truth, prediction, z, sep="\n"), fontsize=10)
    fig.legend(handles=_contour_legend(any_truth, any_prediction), loc="outside lower center", ncols=4)
    return _save_png(fig, out_png)


def _checked_case(case: OverlayCase) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, int]:
    image = np.asarray(case.image_hu)
    if image.ndim != 3:
        raise ValueError(f"{case.title}: CT must be 3D (slice, row, column), got shape {image.shape}")
    masks = [None if m is None else np.asarray(m) for m in (case.truth, case.prediction)]
    for name, mask in zip(("truth", "prediction"), masks, strict=True):
        if mask is not None and mask.shape != image.shape:
            raise ValueError(f"{case.title}: {name} shape {mask.shape} differs from CT shape {image.shape}")
    if all(m is None for m in masks):
        raise ValueError(f"{case.title}: need a ground truth or a prediction to overlay")
    z = pick_slice(*masks) if case.slice_index is None else int(case.slice_index)
    if not 0 <= z < image.shape[0]:
        raise ValueError(f"{case.title}: slice {z} outside 0..{image.shape[0] - 1}")
    return image, masks[0], masks[1], z


def _draw_case(
    axes: list[Axes],
    ct: np.ndarray,
    truth: np.ndarray | None,
    prediction: np.ndarray | None,
    spacing: Sequence[float] | None,
    window: tuple[float, float],
    full_row: bool,
) -> None:
    """CT in the first panel, then truth and prediction contours; ``full_row`` keeps empty panels."""
    aspect = 1.0 if spacing is None else float(spacing[1]) / float(spacing[2])
    layers = [("CT", None, None)]
    for name, mask, style in (
        ("ground truth", truth, TRUTH_STYLE),
        ("prediction", prediction, PREDICTION_STYLE),
    ):
        if mask is not None or full_row:
            layers.append((name, mask, style))
    for ax, (name, mask, style) in zip(axes, layers, strict=True):
        ax.imshow(ct, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect, interpolation="antialiased")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=10)
        _mark_sides(ax)
        if style is None:
            continue
        if mask is None:
            ax.text(0.5, 0.5, f"no {name}", color="white", ha="center", va="center", transform=ax.transAxes)
            continue
        _contour(ax, mask > 0, KIDNEY_COLOR, style)
        _contour(ax, mask == 2, TUMOR_COLOR, style)
        ax.set_xlim(-0.5, ct.shape[1] - 0.5)
        ax.set_ylim(ct.shape[0] - 0.5, -0.5)


def _contour(ax: Axes, mask: np.ndarray, color: str, style: str) -> None:
    """Outline of a mask (kidney = kidney+tumor outline, so a tumor inside it leaves no inner ring)."""
    if mask.any() and min(mask.shape) >= 2:
        ax.contour(mask.astype(np.uint8), levels=[0.5], colors=[color], linestyles=[style], linewidths=1.5)


def _mark_sides(ax: Axes) -> None:
    """Radiological convention: patient right on the image left."""
    for x, text in ((0.02, "R"), (0.98, "L")):
        ax.text(x, 0.5, text, color="yellow", fontsize=11, ha="center", va="center", transform=ax.transAxes)


def _contour_legend(truth: bool, prediction: bool) -> list[Line2D]:
    handles = []
    for present, source, style in (
        (truth, "truth", TRUTH_STYLE),
        (prediction, "prediction", PREDICTION_STYLE),
    ):
        if present:
            for structure, color in (("kidney", KIDNEY_COLOR), ("tumor", TUMOR_COLOR)):
                handles.append(Line2D([], [], color=color, linestyle=style, label=f"{structure} ({source})"))
    return handles


def _slice(volume: np.ndarray | None, z: int) -> np.ndarray | None:
    return None if volume is None else volume[z]


def _slice_dice_text(truth: np.ndarray | None, prediction: np.ndarray | None, z: int, sep: str) -> str:
    """Dice on the shown slice only, so the picture and its score describe the same pixels."""
    if truth is None or prediction is None:
        return ""
    kidney_tumor = dice(prediction[z] > 0, truth[z] > 0)
    tumor = dice(prediction[z] == 2, truth[z] == 2)
    return f"{sep}slice Dice kidney+tumor {kidney_tumor:.3f}, tumor {tumor:.3f}"


def _save_png(fig: Figure, out_png: str | Path) -> Path:
    """Render into a temporary file beside the target and rename: no half-written PNG, ever."""
    out = Path(out_png)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": FIGURE_MARK})
    return out


def is_report_figure(path: Path) -> bool:
    """Whether ``path`` is a PNG this module drew (named in its text chunk, which precedes the pixels;
    figures drawn before the mark carry only matplotlib's name), so a report may replace it."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    return head.startswith(b"\x89PNG") and (FIGURE_MARK.encode() in head or b"Matplotlib" in head)
