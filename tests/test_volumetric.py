"""The 3D (nnU-Net-class) pipeline: fingerprint, normalization, resampling, patches, sliding windows,
coarse-to-fine, post-processing, and train → predict through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import kits_affine

from nephroseg.cli import main
from nephroseg.data.patches import PatchDataset, is_foreground_sample
from nephroseg.inference.postprocess import postprocess_labels
from nephroseg.inference.segmenter import SegmentationModel, class_labels
from nephroseg.inference.sliding import (
    VolumetricSegmenter,
    make_segmenter,
    mirrored,
    paste,
    sliding_window_predict,
)
from nephroseg.io import KitsCase, read_volume, volume_from_array, write_like
from nephroseg.models import build_model
from nephroseg.preprocess import normalize_hu
from nephroseg.preprocess.fingerprint import (
    CaseFingerprint,
    combine_fingerprints,
    ct_normalize,
    plan_target_spacing,
    sample_foreground,
)
from nephroseg.preprocess.resample import (
    body_box,
    box_with_margin,
    resample_image,
    resample_label,
    resample_labels_nearest,
)
from nephroseg.preprocess.volumetric import VolumeCase, VolumetricSettings, prepare_volume_case
from nephroseg.recipe import load_recipe
from nephroseg.training.volumetric import plan_recipe


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two threads on a busy two-core machine make small 3D convolutions a hundred times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fingerprint(values_a, values_b):
    return combine_fingerprints(
        [
            CaseFingerprint("a", (3.0, 0.8, 0.8), (40, 100, 100), np.asarray(values_a, np.float32)),
            CaseFingerprint("b", (1.0, 0.7, 0.7), (120, 90, 90), np.asarray(values_b, np.float32)),
        ]
    )


def test_fingerprint_statistics_and_ct_normalization_by_hand() -> None:
    a, b = np.arange(0, 100, dtype=np.float32), np.arange(100, 201, dtype=np.float32)
    fp = _fingerprint(a, b)
    values = np.arange(0, 201, dtype=np.float64)  # 0..200
    # numpy's linear percentile of 0..200: position q/100 · 200
    assert fp.percentile_00_5 == pytest.approx(1.0) and fp.percentile_99_5 == pytest.approx(199.0)
    assert fp.mean == pytest.approx(100.0) and fp.std == pytest.approx(values.std())
    assert fp.foreground_voxels == 201 and fp.spacings[1] == (1.0, 0.7, 0.7)
    image = np.array([-1000.0, 0.0, 1.0, 100.0, 199.0, 500.0], np.float32)
    expected = (np.clip(image, 1.0, 199.0) - 100.0) / values.std()
    np.testing.assert_allclose(ct_normalize(image, fp), expected, rtol=1e-6)
    # The planned recipe carries the same statistics, so training and inference normalize alike.
    recipe = plan_recipe(load_recipe("nnunet3d", profile="tiny"), fp)
    np.testing.assert_allclose(normalize_hu(image, recipe.preprocess), expected, rtol=1e-5, atol=1e-6)
    # Foreground sampling: every voxel when there are few, a uniform subset when many.
    label = np.zeros((4, 5, 6), np.uint8)
    label[1:3, 2:4, 1:5] = 1
    image3 = np.arange(label.size, dtype=np.float32).reshape(label.shape)
    np.testing.assert_array_equal(np.sort(sample_foreground(image3, label)), image3[label > 0])
    assert len(sample_foreground(image3, label, n=5)) == 5


def test_target_spacing_median_and_anisotropy_rule() -> None:
    iso = np.array([[1.0, 0.8, 0.8], [1.5, 0.7, 0.7], [1.2, 0.9, 0.9]])
    shapes = np.array([[200, 512, 512]] * 3)
    assert plan_target_spacing(iso, shapes) == pytest.approx((1.2, 0.8, 0.8))
    thick = np.array([[5.0, 0.8, 0.8], [5.0, 0.7, 0.7], [3.0, 0.9, 0.9], [5.0, 0.8, 0.8], [2.5, 0.8, 0.8]])
    thick_shapes = np.array([[40, 512, 512]] * 5)
    target = plan_target_spacing(thick, thick_shapes)
    assert target[0] == pytest.approx(np.percentile(thick[:, 0], 10)) and target[1:] == pytest.approx(
        (0.8, 0.8)
    )


def _ellipsoid(shape, radii):
    grid = np.indices(shape).astype(np.float64)
    centre = [(n - 1) / 2 for n in shape]
    return (sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1).astype(
        np.uint8
    )


@pytest.mark.parametrize("method", ["linear", "nearest"])
@pytest.mark.parametrize(
    "spacing,target", [((3.0, 0.8, 0.8), (1.5, 1.6, 1.6)), ((2.0, 0.8, 0.8), (1.5, 1.6, 1.6))]
)
def test_label_resampling_round_trip_keeps_volume(method: str, spacing, target) -> None:
    label = _ellipsoid((30, 120, 110), (10, 40, 35))
    label[label.astype(bool) & (np.indices(label.shape)[2] > 60)] = 2
    volume = label.astype(bool).sum() * np.prod(spacing)
    down = resample_label(label, spacing, target, method=method)
    assert down.dtype == np.uint8 and set(np.unique(down)) <= {0, 1, 2}
    assert abs(down.astype(bool).sum() * np.prod(target) - volume) / volume < 0.01
    back = resample_label(down, target, spacing, method=method, out_shape=label.shape)
    assert back.shape == label.shape
    assert abs(back.astype(bool).sum() * np.prod(spacing) - volume) / volume < 0.01


def test_anisotropic_image_resampling_is_order_zero_across_slices() -> None:
    rng = np.random.default_rng(0)
    image = np.repeat(rng.normal(size=(6, 1, 1)), 32, axis=1).repeat(32, axis=2).astype(np.float32)
    out = resample_image(image, (5.0, 1.0, 1.0), (2.5, 2.0, 2.0))  # z 5 mm vs 1 mm: anisotropic
    assert out.shape == (12, 16, 16)
    # Each output slice is exactly one source slice (no blending across thick slices).
    np.testing.assert_allclose(out[:, 8, 8], np.repeat(image[:, 0, 0], 2), rtol=1e-5)


def test_body_box_and_box_with_margin() -> None:
    hu = np.full((10, 20, 30), -1000.0)
    hu[2:8, 5:15, 10:25] = 40.0
    assert body_box(hu) == (slice(2, 8), slice(5, 15), slice(10, 25))
    assert body_box(np.full((3, 3, 3), -1000.0)) == (slice(None),) * 3
    mask = np.zeros((10, 20, 30), bool)
    mask[4, 10, 15] = True
    assert box_with_margin(mask, (2, 3, 20)) == (slice(2, 7), slice(7, 14), slice(0, 30))
    assert box_with_margin(np.zeros((2, 2, 2), bool), (1, 1, 1)) is None


def test_sliding_window_identity_reproduces_the_grid() -> None:
    rng = np.random.default_rng(1)
    volume = rng.normal(size=(2, 37, 29, 23)).astype(np.float32)
    for predictor in (lambda x: x, mirrored(lambda x: x, True)):
        out = sliding_window_predict(
            volume, predictor, (16, 16, 16), overlap=0.5, chunk_slices=16, reduce=lambda t: t.numpy()
        )
        assert out.shape == volume.shape
        np.testing.assert_allclose(out, volume, atol=1e-5)
    # The default reduction: argmax labels as uint8, chunked along z.
    labels = sliding_window_predict(volume, lambda x: x, (16, 16, 16), chunk_slices=16)
    assert labels.dtype == np.uint8 and labels.shape == volume.shape[1:]
    np.testing.assert_array_equal(labels, volume.argmax(axis=0))


def _tiny_model(target=(2.0, 2.0, 2.0)) -> SegmentationModel:
    fp = _fingerprint(np.linspace(-50, 250, 100), np.linspace(0, 200, 100))
    recipe = load_recipe("nnunet3d", profile="tiny", overrides=[f"volumetric.target_spacing={list(target)}"])
    recipe = plan_recipe(recipe, fp)
    torch.manual_seed(0)
    return SegmentationModel(build_model(recipe.model).eval(), recipe)


@pytest.mark.parametrize(
    ("tta", "recipe_mirrors", "expected"),
    [(None, True, True), (False, True, False), (True, False, True), (None, False, False)],
)
def test_tta_option_overrides_the_recipe_mirroring_both_ways(tta, recipe_mirrors, expected) -> None:
    tiny = _tiny_model()
    volumetric = tiny.recipe.volumetric.model_copy(update={"mirror_tta": recipe_mirrors})
    model = SegmentationModel(tiny.network, tiny.recipe.model_copy(update={"volumetric": volumetric}))
    segmenter = make_segmenter([model], torch.device("cpu"), tta=tta)
    assert segmenter.mirror_tta is expected


class _FoundAt:
    """A stand-in coarse segmenter that 'finds' a kidney at one place."""

    def __init__(self, where):
        self.where = where

    def segment(self, hu, spacing):
        out = np.zeros(hu.shape, np.uint8)
        out[self.where] = 1
        return out


def test_coarse_to_fine_crop_and_paste_restore_shape_and_geometry(tmp_path: Path) -> None:
    # A volume stored in another orientation (R-A-S), so write_like has to undo the canonicalization.
    stored = np.full((40, 36, 30), -80, np.int16)
    affine = np.diag([1.5, 1.5, 2.5, 1.0])
    affine[:3, 3] = (-20.0, 10.0, 5.0)
    volume = volume_from_array(stored, affine)
    hu = volume.array
    segmenter = VolumetricSegmenter(
        [_tiny_model()], coarse=_FoundAt((slice(5, 7), slice(10, 14), slice(12, 20)))
    )
    seen = {}

    def fine(crop, spacing, crop_body=True):
        seen["shape"] = crop.shape
        return np.full(crop.shape, 2, np.uint8)

    segmenter.segment_crop = fine  # the fine pass: records what it was given
    labels = segmenter.segment(hu, volume.spacing)
    box = segmenter.kidney_box(hu, volume.spacing)
    assert labels.shape == hu.shape and labels.dtype == np.uint8
    assert seen["shape"] == hu[box].shape and hu[box].shape != hu.shape
    assert (labels[box] == 2).all() and labels.sum() == 2 * np.prod(seen["shape"])
    written = nib.load(write_like(labels, volume, tmp_path / "pred.nii.gz"))
    assert written.shape == stored.shape
    np.testing.assert_allclose(written.affine, affine)
    np.testing.assert_array_equal(paste(labels[box], box, hu.shape), labels)


def test_full_segment_returns_the_source_grid() -> None:
    hu = np.full((14, 30, 26), -1000.0, np.float32)
    hu[2:12, 4:26, 3:23] = 60.0
    labels = VolumetricSegmenter([_tiny_model()]).segment(hu, (3.0, 1.4, 1.4))
    assert labels.shape == hu.shape and labels.dtype == np.uint8
    assert not labels[:2].any() and not labels[:, :4].any()  # outside the body box stays background


def test_postprocessing_removes_islands() -> None:
    labels = np.zeros((20, 40, 60), np.uint8)
    labels[5:15, 10:30, 5:20] = 1  # kidney on one side (columns < 30)
    labels[5:15, 10:30, 40:55] = 1  # kidney on the other
    labels[8:11, 15:20, 18:23] = 2  # tumor growing out of the first kidney
    labels[1:3, 35:38, 22:25] = 1  # small kidney island, same side as the first
    labels[17:19, 1:3, 28:32] = 2  # tumor island far from both kidneys
    out = postprocess_labels(labels)
    assert not out[1:3, 35:38, 22:25].any() and not out[17:19, 1:3, 28:32].any()
    np.testing.assert_array_equal(out[5:15, 10:30, 40:55], labels[5:15, 10:30, 40:55])
    assert (out[8:11, 15:20, 18:23] == 2).all() and (
        out[5:15, 10:30, 5:18] == labels[5:15, 10:30, 5:18]
    ).all()


def test_postprocessing_on_the_foreground_box_equals_the_whole_volume() -> None:
    """Post-processing works on the box around the foreground (bounded memory); the result is the
    same as on the whole volume, midline included."""
    from nephroseg.inference.postprocess import drop_detached_tumor, keep_kidney_components

    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = np.zeros((16, 32, 80), np.uint8)
        for _ in range(int(rng.integers(2, 6))):
            z, y, x = rng.integers(0, 12), rng.integers(0, 26), rng.integers(10, 70)
            labels[z : z + int(rng.integers(1, 5)), y : y + 6, x : x + int(rng.integers(2, 9))] = (
                rng.integers(1, 3)
            )
        whole = drop_detached_tumor(keep_kidney_components(labels))
        np.testing.assert_array_equal(postprocess_labels(labels), whole)


def test_tumor_that_touches_no_kidney_becomes_background() -> None:
    """Tumor islands away from the kidney (at any distance) go: by definition, a tumor component
    stays only when one of its voxels has a kidney voxel as a face neighbour (threshold 0 here)."""
    from scipy import ndimage

    from nephroseg.inference.postprocess import drop_detached_tumor

    rng = np.random.default_rng(1)
    face = ndimage.generate_binary_structure(3, 1)
    for _ in range(20):
        labels = np.zeros((12, 40, 60), np.uint8)
        for _ in range(int(rng.integers(2, 7))):
            z, y, x = rng.integers(0, 11), rng.integers(0, 36), rng.integers(0, 56)
            depth, width = int(rng.integers(1, 3)), int(rng.integers(1, 5))
            labels[z : z + depth, y : y + 4, x : x + width] = rng.integers(1, 3)
        beside_kidney = ndimage.binary_dilation(labels == 1, structure=face)
        tumors, _ = ndimage.label(labels == 2)
        kept = np.unique(tumors[beside_kidney & (tumors > 0)])
        expected = np.where((tumors > 0) & ~np.isin(tumors, kept), 0, labels)
        np.testing.assert_array_equal(drop_detached_tumor(labels, min_contact=1e-9), expected)


def test_patches_oversample_foreground_preferring_tumor() -> None:
    label = np.zeros((30, 40, 40), np.uint8)
    label[10:20, 10:30, 10:20] = 1
    label[12:15, 12:15, 12:15] = 2
    case = VolumeCase(
        "c",
        np.zeros(label.shape, np.int16),
        label,
        (1.0, 1.0, 1.0),
        np.argwhere(label == 2),
        np.argwhere(label == 1),
    )
    recipe = plan_recipe(
        load_recipe("nnunet3d", profile="tiny", overrides=["volumetric.target_spacing=[1,1,1]"]),
        _fingerprint(np.arange(10.0), np.arange(10.0)),
    )
    dataset = PatchDataset([case], recipe, seed=0, augment=False)
    n, tumor, foreground = 300, 0, 0
    for i in range(n):
        rng = np.random.default_rng([0, 0, i])
        rng.integers(1)  # the case draw
        centre = dataset.centre(case, is_foreground_sample(i, dataset.share), rng)
        foreground += bool(label[tuple(centre)] > 0)
        tumor += bool(label[tuple(centre)] == 2)
    assert foreground / n >= 1 / 3 and tumor > foreground / 2
    image, target = dataset[5]
    assert image.shape == target.shape == (1, 16, 16, 16) and target.dtype == torch.int64


def test_preprocessed_cache_is_reused_and_rebuilt_on_new_settings(tmp_path: Path) -> None:
    from conftest import blob_case, save_nifti

    image, label = blob_case()
    affine = kits_affine((3.0, 1.5, 1.5))
    case = KitsCase(
        "case_00000",
        save_nifti(tmp_path / "d" / "imaging.nii.gz", image, affine, np.int16),
        save_nifti(tmp_path / "d" / "segmentation.nii.gz", label, affine, np.uint8),
    )
    settings = VolumetricSettings(target_spacing=(3.0, 2.0, 2.0))
    first = prepare_volume_case(case, settings, tmp_path / "cache")
    entries = sorted((tmp_path / "cache" / "volumetric").iterdir())
    stamp = (entries[0] / "meta.json").stat().st_mtime_ns
    again = prepare_volume_case(case, settings, tmp_path / "cache")
    assert isinstance(again.hu, np.memmap) and (entries[0] / "meta.json").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(np.asarray(again.label), first.label)
    prepare_volume_case(case, VolumetricSettings(target_spacing=(3.0, 1.0, 1.0)), tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "volumetric").iterdir())) == 2
    assert not list((tmp_path / "cache").rglob("*.tmp*"))


def _run(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def test_cli_train_and_predict_3d_in_source_geometry(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    assert (
        _run(
            [
                "synth",
                "--out",
                str(data),
                "--cases",
                "3",
                "--size",
                "40",
                "--thickness",
                "3",
                "5",
                "--no-progress",
            ]
        )
        == 0
    )
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--recipe", "nnunet3d", "--profile", "tiny"]
    assert _run([*args, "--device", "cpu", "--no-progress"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == "dynunet3d" and summary["steps"] == 2 and summary["world_size"] == 1
    assert summary["postprocess"] in ("none", "components")
    for name in ("recipe.yaml", "split.json", "log.csv", "fingerprint.json", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    out = tmp_path / "pred"
    predict_args = ["predict", "-i", str(data), "-o", str(out), "-m", str(run)]
    assert _run([*predict_args, "--device", "cpu", "--threads", "1", "--no-progress"]) == 0
    for case in sorted(p.name for p in data.glob("case_*")):
        written = nib.load(out / f"{case}.nii.gz")
        source = nib.load(data / case / "imaging.nii.gz")
        assert written.shape == source.shape and written.get_data_dtype() == np.uint8
        np.testing.assert_allclose(written.affine, source.affine)
        assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2}
    assert (
        read_volume(out / "case_00000.nii.gz", label=True).array.shape
        == read_volume(data / "case_00000" / "imaging.nii.gz").array.shape
    )
    # Nearest-neighbour resampling of labels never invents values.
    assert set(np.unique(resample_labels_nearest(np.array([[[0, 2]]], np.uint8), (3, 4, 5)))) == {0, 2}
    # --max-memory covers 3D models too: refused with the figure before any output is written.
    capsys.readouterr()
    refused = tmp_path / "refused"
    assert _run([*predict_args[:3], "-o", str(refused), *predict_args[5:], "--max-memory", "64KB"]) == 2
    err = capsys.readouterr().err
    assert "needs about" in err and "more than --max-memory 64.0 KB" in err and not refused.exists()
    assert (
        _run([*predict_args[:3], "-o", str(tmp_path / "fits"), *predict_args[5:], "--max-memory", "16GB"])
        == 0
    )


def test_volumetric_peak_estimate_by_hand() -> None:
    from nephroseg.inference.guards import volumetric_peak_bytes

    # 100 × 200 × 200 voxels of 2 × 1 × 1 mm at a 2 mm target: R = 100 × 100 × 100; a chunk is fed
    # 4·16 + 2·8 = 80 slices; patch 16³; 3 classes; 10 floats of activations per voxel.
    estimate = volumetric_peak_bytes(
        (100, 200, 200),
        (2.0, 1.0, 1.0),
        (2.0, 2.0, 2.0),
        (16, 16, 16),
        chunk_slices=0,
        sw_batch_size=2,
        num_classes=3,
        activations=10.0,
    )
    voxels, resampled, chunk = 100 * 200 * 200, 100**3, 80 * 100 * 100
    windows = voxels * 5 + resampled * 5 + chunk * (8 + 36 + 4) + 2 * (1 + 10 + 6) * 16**3 * 4
    assert estimate == max(voxels * 12, voxels * 5 + resampled * 8, windows, voxels * 7 + resampled)
    assert estimate == windows  # the chunk's class-wide sums dominate at this size
    # A much finer target spacing makes the resampled volume dominate.
    fine = volumetric_peak_bytes(
        (100, 200, 200), (2.0, 1.0, 1.0), (0.5, 0.5, 0.5), (16, 16, 16),
        chunk_slices=0, sw_batch_size=2, num_classes=3, activations=10.0,
    )  # fmt: skip
    assert fine > voxels * 12 and fine >= voxels * 5 + (400 * 400 * 400) * 8


def test_dynunet3d_plan_deep_supervision_forward_backward() -> None:
    from nephroseg.models.dynunet3d import plan_unet
    from nephroseg.training.volumetric import build_volumetric_loss

    plan = plan_unet((128, 128, 128), (1.0, 1.0, 1.0))
    assert len(plan.strides) == 6 and plan.divisor == (32, 32, 32)
    thick = plan_unet((40, 160, 160), (5.0, 1.0, 1.0))  # thick slices: in-plane kernels and pooling first
    assert thick.kernels[0] == [1, 3, 3] and thick.strides[1] == [1, 2, 2]
    assert all(n % d == 0 for n, d in zip(thick.patch_size, thick.divisor, strict=True))
    model = _tiny_model().network.train()
    x = torch.randn(2, 1, 16, 16, 16)
    target = torch.zeros(2, 1, 16, 16, 16, dtype=torch.long)
    target[:, :, 4:12, 4:12, 4:12] = 1
    target[:, :, 6:9, 6:9, 6:9] = 2
    outputs = model(x)
    assert isinstance(outputs, list) and len(outputs) >= 2
    assert all(o.shape == (2, 3, 16, 16, 16) for o in outputs)
    loss = build_volumetric_loss(True)(outputs, target)
    head_losses = [build_volumetric_loss(False)(o, target).item() for o in outputs]
    weights = [0.5**i for i in range(len(outputs))]  # nnU-Net: 1, 1/2, 1/4 … divided by their sum
    expected = sum(w * h for w, h in zip(weights, head_losses, strict=True)) / sum(weights)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 3, 16, 16, 16)


def test_3d_training_that_diverges_stops_with_a_clear_message(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    synth = ["synth", "--out", str(data), "--cases", "2", "--size", "40", "--thickness", "3", "5"]
    assert _run([*synth, "--no-progress"]) == 0
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--recipe", "nnunet3d"]
    overrides = ["train.lr=1e38", "train.iterations_per_epoch=4", "volumetric.augment=false"]
    capsys.readouterr()
    code = _run([*args, "--profile", "tiny", "--no-progress", *[a for o in overrides for a in ("--set", o)]])
    assert code == 2 and "training diverged" in capsys.readouterr().err


def test_class_labels_is_the_argmax_over_any_class_axis_with_ties_to_the_lower_label() -> None:
    # Two pixels by hand: a tie of background and kidney → background; of kidney and tumor → kidney.
    scores = torch.tensor([[0.4, 0.1], [0.4, 0.45], [0.2, 0.45]])  # (C=3, 2 pixels)
    assert class_labels(scores, dim=0).tolist() == [0, 1]
    batch = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    labels = class_labels(batch, dim=1)
    assert labels.dtype == np.uint8 and labels.shape == (2, 5, 7)
    assert np.array_equal(labels, batch.argmax(dim=1).numpy())


def test_tumor_kidney_contact_of_a_hand_built_cube() -> None:
    """A 4×4×4 tumor has 56 boundary voxels (64 less the 2×2×2 core); sharing one 4×4 face with the
    kidney gives 16 of them a kidney neighbour, touching it at one voxel gives 1."""
    from nephroseg.inference.postprocess import tumor_kidney_contact

    labels = np.zeros((12, 12, 24), np.uint8)
    labels[2:10, 2:10, 2:6] = 1  # kidney
    labels[4:8, 4:8, 6:10] = 2  # tumor on the kidney's x = 6 face: all 16 voxels of its face
    labels[4:8, 4:8, 12:17] = 1  # a second kidney piece
    labels[7:11, 7:11, 17:21] = 2  # tumor beside it: only (7, 7, 17) has a kidney neighbour, (7, 7, 16)
    components, contact = tumor_kidney_contact(labels)
    face = components[5, 5, 7]
    corner = components[8, 8, 18]
    assert contact[face] == pytest.approx(16 / 56)
    assert contact[corner] == pytest.approx(1 / 56)


def test_detached_tumor_becomes_background() -> None:
    """The tumor on the kidney's face stays; the one touching it at a single voxel of 56 (below the
    2 % threshold) becomes background, though it touches the kidney."""
    from nephroseg.inference.postprocess import drop_detached_tumor

    labels = np.zeros((12, 12, 24), np.uint8)
    labels[2:10, 2:10, 2:6] = 1
    labels[4:8, 4:8, 6:10] = 2
    labels[4:8, 4:8, 12:17] = 1
    labels[7:11, 7:11, 17:21] = 2
    out = drop_detached_tumor(labels)
    expected = labels.copy()
    expected[7:11, 7:11, 17:21] = 0
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(drop_detached_tumor(labels, min_contact=0.01), labels)
