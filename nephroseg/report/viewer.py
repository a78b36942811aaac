"""One case in the browser: a self-contained HTML page to scroll through a CT with its labels.

Nothing to install, serve or upload: the axial slices travel inside the file (the CT as JPEG in
one window, each label map as lossless PNG) and a short script (``viewer.html`` beside this module)
stacks them again and draws the axial, coronal and sagittal planes through one point, the
prediction filled and the ground truth outlined, with each slice's areas and Dice. Axial slices are
``array[z]`` of the canonical I-P-L orientation: shown the radiological way, anterior up and the
patient's right on the left.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import numpy as np
from PIL import Image

from nephroseg.errors import NephrosegInputError
from nephroseg.io import atomic_write_text, read_volume
from nephroseg.io.kits import CASE_PATTERN, IMAGING_NAME, SEGMENTATION_NAME, check_same_grid
from nephroseg.report.measure import voxel_volume_ml
from nephroseg.report.plots import ABDOMEN_WINDOW, KIDNEY_COLOR, TUMOR_COLOR

CT_JPEG_QUALITY = 90  # a 512×512 abdominal slice in ~40 kB; the labels, not the CT, must be exact
LABEL_GREY_STEP = 127  # label k is stored as grey k·127, far apart should a browser adjust greys
DATA_MARK = "/*NEPHROSEG_DATA*/"  # where the template takes the case's JSON
PAGE_MARK = 'id="nephroseg-data"'  # how an existing page is known to be one of ours (safe to replace)
HTML_SUFFIXES = (".html", ".htm")
MAP_PREFIXES = ("prediction_", "truth_")  # slice_counts' keys of one map (the others compare the two)


def view_case(
    image_path: str | Path,
    out_html: str | Path,
    *,
    prediction_path: str | Path | None = None,
    truth_path: str | Path | None = None,
    window: tuple[float, float] = ABDOMEN_WINDOW,
) -> Path:
    """``nephroseg view``: read a CT (a volume file, a DICOM series folder or a KiTS case folder,
    which brings its own segmentation as the truth) and its label maps, check that they lie on the
    CT's grid, and write the page. An existing file is replaced only when it is such a page."""
    image_path, out = Path(image_path), Path(out_html)
    if not window[1] > window[0]:
        raise NephrosegInputError(
            "--window", f"{window[0]:g} to {window[1]:g} HU: the upper must exceed the lower"
        )
    if out.suffix.lower() not in HTML_SUFFIXES:
        raise NephrosegInputError(out, "the viewer is an HTML page: give the output a .html name")
    if out.exists() and not is_viewer_page(out):
        raise NephrosegInputError(out, "exists and is not a nephroseg viewer page; not overwritten")
    title = image_path.name
    if image_path.is_dir() and CASE_PATTERN.match(image_path.name) and (image_path / IMAGING_NAME).is_file():
        if truth_path is None and (image_path / SEGMENTATION_NAME).is_file():
            truth_path = image_path / SEGMENTATION_NAME
        image_path = image_path / IMAGING_NAME
    image = read_volume(image_path)
    labels = {}
    for name, path in (("prediction", prediction_path), ("truth", truth_path)):
        if path is not None:
            label = read_volume(path, label=True, on_grid_of=image)  # a DICOM-SEG onto the CT
            check_same_grid(image_path, Path(path), *image.stored_grid, *label.stored_grid)
            labels[name] = label.array
    return viewer_html(image.array, out, spacing=image.spacing, title=title, window=window, **labels)


def ct_to_grey(image_hu: np.ndarray, window: tuple[float, float] = ABDOMEN_WINDOW) -> np.ndarray:
    """HU to display grey (uint8): ``window[0]`` and below black, ``window[1]`` and above white."""
    low, high = float(window[0]), float(window[1])
    if not high > low:
        raise ValueError(f"window {window}: the upper HU must exceed the lower")
    scaled = (np.clip(np.asarray(image_hu, dtype=np.float32), low, high) - low) * (255.0 / (high - low))
    return np.rint(scaled).astype(np.uint8)


def slice_counts(prediction: np.ndarray | None, truth: np.ndarray | None) -> dict[str, np.ndarray]:
    """Voxel counts per axial slice, counted slice by slice (no whole-volume temporaries beside the
    label maps): kidney and tumor of each map given; with both, the overlap and the sum of the two
    sizes of kidney+tumor and of tumor, from which slice and case Dice follow."""
    maps = {
        name: label for name, label in (("prediction", prediction), ("truth", truth)) if label is not None
    }
    if not maps:
        return {}
    depth = next(iter(maps.values())).shape[0]
    keys = [f"{name}_{structure}" for name in maps for structure in ("kidney", "tumor")]
    keys += (
        [f"{s}_{part}" for s in ("kidney_tumor", "tumor") for part in ("overlap", "sizes")]
        if len(maps) == 2
        else []
    )
    counts = {key: np.zeros(depth, dtype=np.int64) for key in keys}
    for z in range(depth):
        for name, label in maps.items():
            counts[f"{name}_kidney"][z] = np.count_nonzero(label[z] == 1)
            counts[f"{name}_tumor"][z] = np.count_nonzero(label[z] == 2)
        if len(maps) == 2:
            predicted, true = maps["prediction"][z], maps["truth"][z]
            for structure, a, b in (
                ("kidney_tumor", predicted > 0, true > 0),
                ("tumor", predicted == 2, true == 2),
            ):
                counts[f"{structure}_overlap"][z] = np.count_nonzero(a & b)
                counts[f"{structure}_sizes"][z] = np.count_nonzero(a) + np.count_nonzero(b)
    return counts


def slice_table(
    prediction: np.ndarray | None, truth: np.ndarray | None, spacing: Sequence[float]
) -> dict[str, list[float | None]]:
    """Per axial slice: kidney and tumor areas in cm² of each label map given, and with both the
    slice's kidney+tumor and tumor Dice (None where neither map has that structure on the slice)."""
    return _table(slice_counts(prediction, truth), spacing)


def case_summary(counts: dict[str, np.ndarray], spacing: Sequence[float]) -> dict[str, float]:
    """Kidney and tumor volumes (ml) of each map and, with both, the case's KiTS Dice (1.0 where
    neither map holds the structure, as ``metrics.dice``), from the per-slice counts."""
    voxel_ml = voxel_volume_ml(spacing)
    summary = {
        f"{key}_ml": round(int(v.sum()) * voxel_ml, 2)
        for key, v in counts.items()
        if key.startswith(MAP_PREFIXES)
    }
    for structure in ("kidney_tumor", "tumor"):
        if f"{structure}_sizes" in counts:
            sizes = int(counts[f"{structure}_sizes"].sum())
            overlap = int(counts[f"{structure}_overlap"].sum())
            summary[f"{structure}_dice"] = 1.0 if sizes == 0 else 2.0 * overlap / sizes
    if "tumor_dice" in summary:
        summary["composite_dice"] = (summary["kidney_tumor_dice"] + summary["tumor_dice"]) / 2.0
    return summary


def start_point(
    counts: dict[str, np.ndarray],
    prediction: np.ndarray | None,
    truth: np.ndarray | None,
    shape: Sequence[int],
) -> tuple[int, int, int]:
    """Where the page opens, (slice, row, column): the slice ``plots.pick_slice`` picks (the largest
    tumor area, truth first, else the largest kidney+tumor area), found from the per-slice counts, at
    the centre of that structure there; the volume's centre without labels."""
    present = [(name, m) for name, m in (("truth", truth), ("prediction", prediction)) if m is not None]
    for structure in ("tumor", "kidney_tumor"):
        for name, label in present:
            area = counts[f"{name}_tumor"] + (counts[f"{name}_kidney"] if structure == "kidney_tumor" else 0)
            if area.max() > 0:
                z = int(area.argmax())
                return (z, *_centre(label[z] == 2 if structure == "tumor" else label[z] > 0))
    return shape[0] // 2, shape[1] // 2, shape[2] // 2


def error_point(
    counts: dict[str, np.ndarray], prediction: np.ndarray | None, truth: np.ndarray | None
) -> tuple[int, int, int] | None:
    """Where the prediction is most wrong, (slice, row, column): the slice ``plots.error_slice``
    picks (most voxels that disagree about tumor, else about kidney+tumor), found from the per-slice
    counts (|A xor B| = |A| + |B| - 2 |A and B|), at the centre of the disagreement there."""
    if prediction is None or truth is None:
        return None
    for structure, above in (("tumor", 1), ("kidney_tumor", 0)):
        wrong = counts[f"{structure}_sizes"] - 2 * counts[f"{structure}_overlap"]
        if wrong.max() > 0:
            z = int(wrong.argmax())
            return (z, *_centre((prediction[z] > above) != (truth[z] > above)))
    return None


def viewer_html(
    image_hu: np.ndarray,
    out_html: str | Path,
    *,
    prediction: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    title: str = "",
    window: tuple[float, float] = ABDOMEN_WINDOW,
) -> Path:
    """Write the page for one canonical CT (slice, row, column) and its label maps, atomically.
    It opens at the largest tumor of the truth when given, else of the prediction (``start_point``)."""
    image = np.asarray(image_hu)
    if image.ndim != 3:
        raise ValueError(f"{title}: CT must be 3D (slice, row, column), got shape {image.shape}")
    for name, label in (("prediction", prediction), ("truth", truth)):
        if label is not None and np.shape(label) != image.shape:
            raise ValueError(f"{title}: {name} shape {np.shape(label)} differs from CT shape {image.shape}")
    counts = slice_counts(prediction, truth)
    data = {
        "title": title,
        "shape": list(image.shape),
        "spacing": [float(s) for s in spacing],
        "window": [float(window[0]), float(window[1])],
        "colors": {"1": KIDNEY_COLOR, "2": TUMOR_COLOR},
        "labelStep": LABEL_GREY_STEP,
        "point": list(start_point(counts, prediction, truth, image.shape)),
        "errorPoint": error_point(counts, prediction, truth),
        "ct": [_data_url(ct_to_grey(s, window), "JPEG") for s in image],
        "prediction": _label_urls(prediction),
        "truth": _label_urls(truth),
        "table": _table(counts, spacing),
        "summary": case_summary(counts, spacing),
    }
    # "</" cannot end the script element early once escaped; base64 and numbers hold no "<"
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    template = files("nephroseg.report").joinpath("viewer.html").read_text(encoding="utf-8")
    out = Path(out_html)
    atomic_write_text(out, template.replace(DATA_MARK, payload, 1))
    return out


def _centre(mask: np.ndarray) -> tuple[int, int]:
    """(row, column) of a non-empty 2D mask's centre, rounded to a pixel."""
    rows, cols = np.nonzero(mask)
    return round(float(rows.mean())), round(float(cols.mean()))


def is_viewer_page(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return PAGE_MARK.encode() in handle.read(16384)  # the mark stands before the slices


def _label_urls(label: np.ndarray | None) -> list[str] | None:
    if label is None:
        return None
    return [_data_url(np.asarray(s, dtype=np.uint8) * np.uint8(LABEL_GREY_STEP), "PNG") for s in label]


def _data_url(grey: np.ndarray, image_format: str) -> str:
    buffer = io.BytesIO()
    options = {"quality": CT_JPEG_QUALITY} if image_format == "JPEG" else {"optimize": True}
    Image.fromarray(np.ascontiguousarray(grey, dtype=np.uint8)).save(buffer, format=image_format, **options)
    mime = "image/jpeg" if image_format == "JPEG" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _table(counts: dict[str, np.ndarray], spacing: Sequence[float]) -> dict[str, list[float | None]]:
    pixel_cm2 = float(spacing[1]) * float(spacing[2]) / 100.0
    table: dict[str, list[float | None]] = {
        f"{key}_cm2": [round(int(n) * pixel_cm2, 3) for n in v]
        for key, v in counts.items()
        if key.startswith(MAP_PREFIXES)
    }
    for structure in ("kidney_tumor", "tumor"):
        if f"{structure}_sizes" in counts:
            table[f"{structure}_dice"] = [
                None if int(t) == 0 else round(2.0 * int(o) / int(t), 4)
                for o, t in zip(counts[f"{structure}_overlap"], counts[f"{structure}_sizes"], strict=True)
            ]
    return table
