"""The HTML viewer: greys and areas against hand computation, every label slice back to the voxel,
the page's drawing functions run in node, and the command's bad input."""

from __future__ import annotations

import base64
import inspect
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import blob_case, files_under, kits_affine, save_nifti
from PIL import Image
from test_cli import run_cli

import nephroseg
from nephroseg import cli
from nephroseg.errors import NephrosegInputError
from nephroseg.io import read_volume
from nephroseg.metrics.overlap import kits_scores
from nephroseg.report import error_slice, pick_slice, structure_volumes_ml
from nephroseg.report.build import build_report
from nephroseg.report.plots import ABDOMEN_WINDOW
from nephroseg.report.viewer import (
    LABEL_GREY_STEP,
    case_summary,
    ct_to_grey,
    error_point,
    slice_counts,
    slice_table,
    start_point,
    view_case,
    viewer_html,
)

PAGE_DATA = re.compile(r'<script type="application/json" id="nephroseg-data">(.*?)</script>', re.S)


def page_data(path: Path) -> dict:
    (payload,) = PAGE_DATA.findall(path.read_text(encoding="utf-8"))
    return json.loads(payload)


def decode(data_url: str) -> np.ndarray:
    header, encoded = data_url.split(",", 1)
    assert header in ("data:image/png;base64", "data:image/jpeg;base64")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))


def test_grey_levels_of_the_abdominal_window():
    assert inspect.signature(cli.view).parameters["window"].default == ABDOMEN_WINDOW  # one window
    hu = np.array([-1000.0, -160.0, 0.0, 40.0, 240.0, 3000.0])
    # (HU + 160) · 255 / 400, rounded, clipped to 0..255
    assert ct_to_grey(hu, (-160.0, 240.0)).tolist() == [0, 0, 102, 128, 255, 255]
    with pytest.raises(ValueError, match="upper HU"):
        ct_to_grey(hu, (100.0, 100.0))


def test_slice_areas_and_dice_by_hand():
    prediction = np.zeros((3, 4, 4), np.uint8)
    truth = np.zeros((3, 4, 4), np.uint8)
    prediction[0, :2, :2] = 1  # 4 kidney pixels
    prediction[0, 3, 3] = 2  # 1 tumor pixel
    truth[0, :2, :3] = 1  # 6 kidney pixels, 4 of them shared
    truth[1, 0, 0] = 2  # tumor on slice 1 missed
    table = slice_table(prediction, truth, spacing=(5.0, 0.5, 2.0))  # 1 mm² = 0.01 cm² per pixel
    assert table["prediction_kidney_cm2"] == [0.04, 0.0, 0.0]
    assert table["prediction_tumor_cm2"] == [0.01, 0.0, 0.0]
    assert table["truth_kidney_cm2"] == [0.06, 0.0, 0.0]
    assert table["truth_tumor_cm2"] == [0.0, 0.01, 0.0]
    # slice 0 kidney+tumor: predicted 5, true 6, shared 4 → 8/11; slice 1: 0 of 1; slice 2: empty
    assert table["kidney_tumor_dice"] == [round(8 / 11, 4), 0.0, None]
    assert table["tumor_dice"] == [0.0, 0.0, None]
    assert sorted(table) == sorted(
        [f"{m}_{s}_cm2" for m in ("prediction", "truth") for s in ("kidney", "tumor")]
        + ["kidney_tumor_dice", "tumor_dice"]
    )
    assert set(slice_table(prediction, None, (1, 1, 1))) == {"prediction_kidney_cm2", "prediction_tumor_cm2"}


def test_case_summary_agrees_with_the_metrics_and_the_report():
    _, truth = blob_case(shape=(9, 30, 36), seed=2)
    prediction = np.roll(truth, 2, axis=2)
    spacing = (2.5, 0.7, 0.9)
    summary = case_summary(slice_counts(prediction, truth), spacing)
    scores = kits_scores(prediction, truth)
    assert summary["kidney_tumor_dice"] == pytest.approx(scores.kidney_tumor_dice, abs=1e-12)
    assert summary["tumor_dice"] == pytest.approx(scores.tumor_dice, abs=1e-12)
    assert summary["composite_dice"] == pytest.approx(scores.composite_dice, abs=1e-12)
    for name, label in (("prediction", prediction), ("truth", truth)):
        volumes = structure_volumes_ml(label, spacing)
        assert summary[f"{name}_kidney_ml"] == pytest.approx(volumes["kidney"], abs=0.005)
        assert summary[f"{name}_tumor_ml"] == pytest.approx(volumes["tumor"], abs=0.005)
    no_tumor = np.where(truth == 2, 1, truth)  # neither map holds a tumor: Dice 1.0 by convention
    assert case_summary(slice_counts(no_tumor, no_tumor), spacing)["tumor_dice"] == 1.0
    assert set(case_summary(slice_counts(None, truth), spacing)) == {"truth_kidney_ml", "truth_tumor_ml"}


def test_the_page_opens_at_the_centre_of_the_largest_tumor():
    truth = np.zeros((5, 12, 14), np.uint8)
    truth[1, 2:9, 2:11] = 1
    truth[3, 2:6, 6:9] = 1
    truth[3, 3:6, 6:9] = 2  # 9 voxels: rows 3-5, columns 6-8
    prediction = np.zeros_like(truth)
    prediction[4, 0:2, 0:6] = 2  # 12 voxels: a larger predicted tumor does not move the truth's point
    shape = truth.shape

    def opening(prediction, truth):
        point = start_point(slice_counts(prediction, truth), prediction, truth, shape)
        if prediction is not None or truth is not None:
            assert point[0] == pick_slice(truth, prediction)  # the overlay's slice
        return point

    assert opening(prediction, truth) == (3, 4, 7)
    assert opening(prediction, None) == (4, 0, 2)  # rows 0-1, columns 0-5: .5 rounds to even
    assert opening(None, np.where(truth == 2, 1, truth)) == (1, 5, 6)  # kidney: rows 2-8, columns 2-10
    assert opening(None, None) == (2, 6, 7)
    # most voxels wrong about tumor: slice 4 (the 12 false) over slice 3 (the 9 missed), at their centre
    counts = slice_counts(prediction, truth)
    assert error_point(counts, prediction, truth) == (4, 0, 2) and error_slice(truth, prediction) == 4
    assert error_point(slice_counts(truth, truth), truth, truth) is None
    assert error_point(slice_counts(None, truth), None, truth) is None


def test_page_carries_every_slice_back_to_the_voxel(tmp_path: Path):
    image, truth = blob_case(shape=(7, 24, 30), seed=3)
    prediction = np.roll(truth, 2, axis=2)
    out = viewer_html(
        image,
        tmp_path / "case.html",
        prediction=prediction,
        truth=truth,
        spacing=(3.0, 0.8, 0.7),
        title="c</script>",
    )
    assert files_under(tmp_path) == ["case.html"]  # written atomically, nothing left beside it
    data = page_data(out)
    assert data["title"] == "c</script>"  # escaped inside the page, intact once parsed
    assert data["shape"] == [7, 24, 30] and data["spacing"] == [3.0, 0.8, 0.7]
    assert data["point"] == list(start_point(slice_counts(prediction, truth), prediction, truth, image.shape))
    assert data["errorPoint"][0] == error_slice(truth, prediction)
    assert len(data["ct"]) == len(data["prediction"]) == len(data["truth"]) == 7
    for z in range(7):
        assert np.array_equal(decode(data["prediction"][z]) // LABEL_GREY_STEP, prediction[z])
        assert np.array_equal(decode(data["truth"][z]) // LABEL_GREY_STEP, truth[z])
        grey = decode(data["ct"][z]).astype(np.int16)
        assert grey.shape == (24, 30)
        expected = ct_to_grey(image[z]).astype(np.int16)
        # JPEG: close, not exact (under 4 grey levels, 6 HU, on noise of 10 HU SD), and not mirrored
        assert np.abs(grey - expected).mean() < 4.0 < np.abs(grey - expected[:, ::-1]).mean()
    assert data["table"] == slice_table(prediction, truth, (3.0, 0.8, 0.7))


def test_page_without_labels_and_shape_checks(tmp_path: Path):
    image, _ = blob_case(shape=(4, 10, 12))
    data = page_data(viewer_html(image, tmp_path / "ct.html"))
    assert data["prediction"] is None and data["truth"] is None and data["point"] == [2, 5, 6]
    with pytest.raises(ValueError, match="prediction shape"):
        viewer_html(image, tmp_path / "bad.html", prediction=np.zeros((4, 10, 11), np.uint8))
    with pytest.raises(ValueError, match="must be 3D"):
        viewer_html(image[0], tmp_path / "bad.html")
    assert files_under(tmp_path) == ["ct.html"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_drawing_functions_in_node():
    """The page's pure functions (label greys to classes, filled and outlined overlays) in node."""
    page = (Path(__file__).parents[1] / "nephroseg" / "report" / "viewer.html").read_text(encoding="utf-8")
    pure = page.split("// ---- pure functions")[1].split("// ---- end of pure functions")[0]
    script = (
        pure.split("\n", 1)[1]
        + """
const greys = new Uint8ClampedArray([0,0,0,255, 127,127,127,255, 254,254,254,255, 126,126,126,255]);
const classes = Array.from(classesFromRgba(greys, 127));
const pixels = new Uint8ClampedArray([100,100,100,255, 100,100,100,255, 100,100,100,255, 0,0,0,255]);
blendFill(pixels, [0, 1, 2, 0], {1: [86,180,233], 2: [230,159,0]}, 0.4);
const ring = new Uint8Array(25); for (const i of [6,7,8,11,12,13,16,17,18]) ring[i] = 2;
const frame = new Uint8ClampedArray(100);
paintEdges(frame, ring, 5, 5, {1: [1,1,1], 2: [9,9,9]});
const edges = []; for (let i = 0; i < 25; i++) if (frame[4 * i] === 9) edges.push(i);
const rows = sliceRows({prediction_kidney_cm2: [1.234], prediction_tumor_cm2: [null]}, 0);
const volume = new Uint8Array(60).map((_, i) => i);  // shape (3, 4, 5)
const planes = [[0, 1], [1, 2], [2, 3]].map(([axis, index]) => {
  const p = plane(volume, [3, 4, 5], axis, index);
  return [p.width, p.height, Array.from(p.data)];
});
const summary = summaryText({prediction_kidney_ml: 360.84, prediction_tumor_ml: 0, truth_kidney_ml: 350.0,
  truth_tumor_ml: 3.25, kidney_tumor_dice: 0.9834, tumor_dice: 0, composite_dice: 0.4917});
console.log(JSON.stringify({classes, pixels: Array.from(pixels), edges, rows, planes, summary}));
"""
    )
    result = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(result.stdout)
    assert got["classes"] == [0, 1, 2, 1]
    # 0.6 · 100 + 0.4 · colour, rounded; background and alpha untouched
    assert got["pixels"][:8] == [100, 100, 100, 255, 94, 132, 153, 255]
    assert got["pixels"][8:] == [152, 124, 60, 255, 0, 0, 0, 255]
    assert got["edges"] == [6, 7, 8, 11, 13, 16, 17, 18]  # the 3×3 block's ring, not its centre
    assert got["rows"] == [["prediction", "1.23", "—"]]
    assert got["summary"] == (
        "prediction: kidney 360.8 ml, tumor 0.0 ml · truth: kidney 350.0 ml, tumor 3.3 ml · "
        "case Dice: kidney+tumor 0.983, tumor 0.000, composite 0.492"
    )
    volume = np.arange(60).reshape(3, 4, 5)  # the three planes through it, as numpy cuts them
    for (width, height, values), cut in zip(
        got["planes"], (volume[1], volume[:, 2], volume[:, :, 3]), strict=True
    ):
        assert (height, width) == cut.shape and values == cut.ravel().tolist()


def write_case(root: Path, spacing=(3.0, 1.2, 1.2)) -> Path:
    image, label = blob_case(shape=(6, 20, 24))
    affine = kits_affine(spacing)
    save_nifti(root / "case_00007" / "imaging.nii.gz", image, affine, np.int16)
    save_nifti(root / "case_00007" / "segmentation.nii.gz", label, affine, np.uint8)
    save_nifti(root / "pred.nii.gz", np.roll(label, 1, axis=1), affine, np.uint8)
    return root


def test_view_case_folder_brings_its_truth(tmp_path: Path, capsys):
    assert nephroseg.view is view_case  # the Python API is the command
    root = write_case(tmp_path / "data")
    out = tmp_path / "v" / "case.html"
    code, stdout, _ = run_cli(
        ["view", str(root / "case_00007"), "--pred", str(root / "pred.nii.gz"), "-o", str(out)], capsys
    )
    assert code == 0 and "wrote" in stdout
    data = page_data(out)
    assert data["title"] == "case_00007" and data["spacing"] == pytest.approx([3.0, 1.2, 1.2])
    assert data["truth"] is not None and data["prediction"] is not None
    _, label = blob_case(shape=(6, 20, 24))
    assert np.array_equal(decode(data["truth"][3]) // LABEL_GREY_STEP, label[3])
    code, _, _ = run_cli(["view", str(root / "case_00007"), "-o", str(out)], capsys)
    assert code == 0 and page_data(out)["prediction"] is None  # a page of ours is replaced


def test_view_bad_input_one_line_and_nothing_written(tmp_path: Path, capsys):
    root = write_case(tmp_path / "data")
    other = save_nifti(
        tmp_path / "other.nii.gz", np.zeros((6, 20, 25), np.uint8), kits_affine((3.0, 1.2, 1.2))
    )
    notes = tmp_path / "notes.html"
    notes.write_text("<p>mine</p>")
    cases = [
        (["--pred", str(other), "-o", str(tmp_path / "a.html")], "other.nii.gz: label shape"),
        (["-o", str(tmp_path / "a.nii.gz")], "a.nii.gz: the viewer is an HTML page"),
        (["-o", str(notes)], "notes.html: exists and is not a nephroseg viewer page"),
        (["--window", "300", "-100", "-o", str(tmp_path / "a.html")], "--window: 300 to -100 HU: the upper"),
        (["--pred", str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "a.html")], "missing.nii.gz"),
    ]
    for args, message in cases:
        code, _, err = run_cli(["view", str(root / "case_00007"), *args], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert notes.read_text() == "<p>mine</p>"
    assert not (tmp_path / "a.html").exists() and not (tmp_path / "a.nii.gz").exists()
    with pytest.raises(NephrosegInputError, match="file not found"):
        view_case(tmp_path / "nothing.nii.gz", tmp_path / "b.html")


def test_a_ras_file_shows_the_same_slices_as_its_kits_original(tmp_path: Path):
    """The page shows the canonical I-P-L slices (radiological view) whatever the file's axis order."""
    root = write_case(tmp_path / "data")
    for name in ("imaging", "segmentation"):
        original = nib.load(root / "case_00007" / f"{name}.nii.gz")
        ras = nib.as_closest_canonical(original)
        assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
        nib.save(ras, tmp_path / f"ras_{name}.nii.gz")
    kits_page = page_data(view_case(root / "case_00007", tmp_path / "kits.html"))
    ras_page = page_data(
        view_case(
            tmp_path / "ras_imaging.nii.gz",
            tmp_path / "ras.html",
            truth_path=tmp_path / "ras_segmentation.nii.gz",
        )
    )
    assert ras_page["shape"] == kits_page["shape"] and ras_page["spacing"] == pytest.approx(
        kits_page["spacing"]
    )
    assert ras_page["truth"] == kits_page["truth"] and ras_page["ct"] == kits_page["ct"]


def test_report_links_a_page_per_case(kits_dir: Path, tmp_path: Path):
    predictions = tmp_path / "pred"
    for case in ("case_00000", "case_00001", "case_00002"):
        label = nib.load(kits_dir / case / "segmentation.nii.gz")
        shifted = np.roll(np.asarray(label.dataobj), 1, axis=0)
        save_nifti(predictions / f"{case}.nii.gz", shifted, label.affine, np.uint8)
    build_report(predictions, kits_dir, tmp_path / "report", gt_dir=kits_dir, progress=False)
    pages = sorted(p.name for p in (tmp_path / "report" / "viewer").iterdir())
    assert pages == ["case_00000.html", "case_00001.html", "case_00002.html"]
    data = page_data(tmp_path / "report" / "viewer" / "case_00001.html")
    truth = read_volume(kits_dir / "case_00001" / "segmentation.nii.gz", label=True).array
    predicted = read_volume(predictions / "case_00001.nii.gz", label=True).array
    for z in range(truth.shape[0]):
        assert np.array_equal(decode(data["truth"][z]) // LABEL_GREY_STEP, truth[z])
        assert np.array_equal(decode(data["prediction"][z]) // LABEL_GREY_STEP, predicted[z])
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| viewer |" in report and "[html](viewer/case_00001.html)" in report
    build_report(predictions, kits_dir, tmp_path / "no_truth", progress=False)
    data = page_data(tmp_path / "no_truth" / "viewer" / "case_00001.html")
    assert data["truth"] is None and set(data["summary"]) == {"prediction_kidney_ml", "prediction_tumor_ml"}
    build_report(predictions, kits_dir, tmp_path / "plain", gt_dir=kits_dir, viewer=False, progress=False)
    assert not (tmp_path / "plain" / "viewer").exists()
    assert "| viewer |" not in (tmp_path / "plain" / "report.md").read_text()


BROWSER = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
)


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed")
def test_page_draws_in_a_headless_browser(tmp_path: Path):
    """The whole script runs: every slice loads, and once the three planes are drawn the first slice's
    areas and Dice are on the page."""
    image, truth = blob_case(shape=(9, 30, 36), seed=5)
    prediction = np.roll(truth, 1, axis=1)
    page = viewer_html(
        image, tmp_path / "case.html", prediction=prediction, truth=truth, spacing=(2.0, 1.0, 1.0)
    )
    result = subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert '<div id="status"></div>' in result.stdout  # every slice decoded, no error shown
    summary = case_summary(slice_counts(prediction, truth), (2.0, 1.0, 1.0))
    assert f"composite {summary['composite_dice']:.3f}</div>" in result.stdout
    (info,) = re.findall(r'<table id="info">(.*?)</table>', result.stdout)
    z, table = pick_slice(truth, prediction), slice_table(prediction, truth, (2.0, 1.0, 1.0))
    assert f"slice {z + 1} of 9 ({z * 2.0:.1f} mm)" in info
    dice = [f"{table[key][z]:.3f}" for key in ("kidney_tumor_dice", "tumor_dice")]
    assert f"<th>slice Dice</th><td>{dice[0]}</td><td>{dice[1]}</td>" in info
