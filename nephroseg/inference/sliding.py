"""3D segmentation of a whole volume: sliding windows with Gaussian weighting (MONAI), optional mirror
test-time augmentation, in chunks along z so memory stays bounded by a chunk, never a (classes × volume)
float array.

The volume is cropped to the body, resampled to the model's spacing and normalized as in training;
logits are averaged over windows, mirrorings and ensemble members; the argmax is taken at model
resolution and the uint8 labels are brought back to the source grid by nearest-neighbour lookup.
Coarse-to-fine: a first (low-resolution) segmenter finds the kidneys, the full-resolution one runs
only inside their bounding box plus a margin, and the result is pasted back into the full grid.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from nephroseg.errors import NephrosegInputError
from nephroseg.inference.postprocess import postprocess_labels
from nephroseg.inference.segmenter import SegmentationModel, class_labels
from nephroseg.models import model_info
from nephroseg.preprocess import normalize_hu, padding_value
from nephroseg.preprocess.kidney_boxes import Box
from nephroseg.preprocess.resample import (
    body_box,
    box_with_margin,
    resample_image,
    resample_labels_nearest,
    resampled_shape,
)
from nephroseg.recipe import VolumetricSpec
from nephroseg.runtime import autocast

GAUSSIAN_SIGMA_SCALE = 0.125  # nnU-Net: sigma = patch size / 8


def is_volumetric(model: SegmentationModel) -> bool:
    return model_info(model.recipe.model.name).input_kind == "3d"


def mirror_axes(enabled: bool) -> list[tuple[int, ...]]:
    """Flips of the spatial axes of a (B, C, z, y, x) batch: all 8 combinations, or none."""
    if not enabled:
        return [()]
    return [axes for r in range(4) for axes in itertools.combinations((2, 3, 4), r)]


def mirrored(network: Callable, mirror: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """A predictor averaging the network's logits over the mirrorings of its input."""
    flips = mirror_axes(mirror)

    def predict(x: torch.Tensor) -> torch.Tensor:
        total = None
        for axes in flips:
            out = network(x.flip(axes) if axes else x).float()
            out = out.flip(axes) if axes else out
            total = out if total is None else total + out
        return total / len(flips)

    return predict


def z_chunks(n_slices: int, patch_depth: int, chunk_slices: int) -> Iterator[tuple[int, int, int, int]]:
    """``(start, stop, lo, hi)``: the slices kept, and the slices fed (with half a patch of context)."""
    chunk = max(chunk_slices, patch_depth)
    margin = patch_depth // 2 if n_slices > chunk else 0
    for start in range(0, n_slices, chunk):
        stop = min(n_slices, start + chunk)
        yield start, stop, max(0, start - margin), min(n_slices, stop + margin)


def window_logits(
    x: torch.Tensor,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    patch: tuple[int, int, int],
    *,
    overlap: float = 0.5,
    sw_batch_size: int = 2,
    device: torch.device | str = "cpu",
    cval: float = 0.0,
) -> torch.Tensor:
    """Gaussian-weighted sliding windows over a (1, C, z, y, x) input; the result stays on the CPU."""
    # Imported here: importing MONAI loads all of it (seconds), which 2.5D prediction must not pay.
    from monai.inferers import sliding_window_inference

    with torch.no_grad():
        return sliding_window_inference(
            x,
            roi_size=patch,
            sw_batch_size=sw_batch_size,
            predictor=predictor,
            overlap=overlap,
            mode="gaussian",
            sigma_scale=GAUSSIAN_SIGMA_SCALE,
            padding_mode="constant",
            cval=cval,
            sw_device=device,
            device="cpu",
        )


def sliding_window_predict(
    volume: np.ndarray,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    patch: tuple[int, int, int],
    *,
    overlap: float = 0.5,
    sw_batch_size: int = 2,
    chunk_slices: int = 0,
    device: torch.device | str = "cpu",
    cval: float = 0.0,
    reduce: Callable[[torch.Tensor], np.ndarray] | None = None,
) -> np.ndarray:
    """Predict a (C, z, y, x) volume chunk by chunk along z; ``reduce`` turns a chunk's (K, z', y, x)
    output into an array (default: argmax as uint8), concatenated along z."""
    reduce = reduce or (lambda logits: class_labels(logits, dim=0))
    parts = []
    for start, stop, lo, hi in z_chunks(volume.shape[1], patch[0], chunk_slices or 4 * patch[0]):
        x = torch.from_numpy(np.ascontiguousarray(volume[:, lo:hi], dtype=np.float32))[None]
        out = window_logits(
            x, predictor, patch, overlap=overlap, sw_batch_size=sw_batch_size, device=device, cval=cval
        )
        parts.append(reduce(out[0, :, start - lo : stop - lo]))
    return np.concatenate(parts, axis=-3)


def paste(labels: np.ndarray, box: Box, shape: tuple[int, ...]) -> np.ndarray:
    """A crop's labels put back into a zero volume of ``shape`` at ``box``."""
    out = np.zeros(shape, dtype=np.uint8)
    out[box] = labels
    return out


class VolumetricSegmenter:
    """Segment (z, y, x) HU volumes with one 3D model or an ensemble sharing a target spacing."""

    def __init__(
        self,
        models: list[SegmentationModel],
        device: torch.device | str = "cpu",
        *,
        mirror_tta: bool | None = None,
        overlap: float | None = None,
        chunk_slices: int | None = None,
        postprocess: bool | None = None,
        spacing_scale: float = 1.0,
        coarse: VolumetricSegmenter | None = None,
        coarse_margin_mm: float = 20.0,
        precision: str = "fp32",
    ) -> None:
        """``precision``: a resolved ``runtime.resolve_precision`` choice the windows run in ('bf16':
        3.5× faster on a CPU with AMX, docs/benchmarks.md; 'fp16' on CUDA)."""
        if not models:
            raise ValueError("a segmenter needs at least one model")
        specs = [m.recipe.volumetric for m in models]
        if any(spec is None or spec.target_spacing is None for spec in specs) or not all(
            map(is_volumetric, models)
        ):
            raise NephrosegInputError("--model", "a 3D segmenter needs trained 3D models (volumetric recipe)")
        spacings = {tuple(spec.target_spacing) for spec in specs}  # type: ignore[union-attr]
        if len(spacings) != 1:
            raise NephrosegInputError(
                "--model", f"ensemble members differ in target spacing: {sorted(spacings)}"
            )
        classes = {m.recipe.model.num_classes for m in models}
        if len(classes) != 1:
            raise ValueError(f"ensemble members disagree on the number of classes: {sorted(classes)}")
        self.models = models
        self.spec: VolumetricSpec = specs[0]  # type: ignore[assignment]
        self.num_classes = classes.pop()
        self.device = torch.device(device)
        self.batch_size = self.spec.sw_batch_size
        self.mirror_tta = self.spec.mirror_tta if mirror_tta is None else mirror_tta
        self.overlap = self.spec.sw_overlap if overlap is None else overlap
        self.chunk_slices = self.spec.chunk_slices if chunk_slices is None else chunk_slices
        self.postprocess = self.spec.postprocess == "components" if postprocess is None else postprocess
        self.target_spacing = tuple(s * spacing_scale for s in self.spec.target_spacing)  # type: ignore[union-attr]
        self.patch = tuple(self.spec.patch_size)
        self.coarse = coarse
        self.coarse_margin_mm = coarse_margin_mm
        self.precision = precision
        for model in models:
            model.network.eval()

    def model_grid_labels(self, hu: np.ndarray) -> np.ndarray:
        """Labels (uint8) for HU already on the model grid: windows, mirrorings and members averaged."""
        predictors = [mirrored(m.network, self.mirror_tta) for m in self.models]
        parts = []
        for start, stop, lo, hi in z_chunks(
            hu.shape[0], self.patch[0], self.chunk_slices or 4 * self.patch[0]
        ):
            chunk = np.asarray(hu[lo:hi], dtype=np.float32)
            total = None
            for model, predictor in zip(self.models, predictors, strict=True):
                x = torch.from_numpy(normalize_hu(chunk, model.recipe.preprocess))[None, None]
                with autocast(self.device, self.precision):
                    out = window_logits(
                        x,
                        predictor,
                        self.patch,  # type: ignore[arg-type]
                        overlap=self.overlap,
                        sw_batch_size=self.batch_size,
                        device=self.device,
                        cval=padding_value(model.recipe.preprocess),
                    )[0, :, start - lo : stop - lo].float()
                total = out if total is None else total.add_(out)
            parts.append(class_labels(total, dim=0))  # type: ignore[arg-type]
        return np.concatenate(parts, axis=0)

    def segment_crop(
        self, hu: np.ndarray, spacing: tuple[float, float, float], crop_body: bool = True
    ) -> np.ndarray:
        """(z, y, x) HU → uint8 labels on the same grid, by the model at its own spacing."""
        full: Box = (slice(None), slice(None), slice(None))
        box = body_box(hu, self.spec.body_threshold_hu) if crop_body and self.spec.crop_to_body else full
        crop = hu[box]
        target = self.target_spacing
        shape = resampled_shape(crop.shape, spacing, target)  # type: ignore[arg-type]
        image = resample_image(
            crop,
            spacing,
            target,
            threshold=self.spec.anisotropy_threshold,
            out_shape=shape,  # type: ignore[arg-type]
        )
        labels = self.model_grid_labels(image)
        del image
        if self.postprocess:
            labels = postprocess_labels(labels)
        return paste(resample_labels_nearest(labels, crop.shape), box, hu.shape)

    def kidney_box(self, hu: np.ndarray, spacing: tuple[float, float, float]) -> Box | None:
        """Where the coarse pass finds kidney or tumor, grown by the margin; None when it finds none."""
        if self.coarse is None:
            return None
        found = self.coarse.segment(hu, spacing) > 0
        margin = tuple(math.ceil(self.coarse_margin_mm / s) for s in spacing)
        return box_with_margin(found, margin)  # type: ignore[arg-type]

    def segment(self, hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
        """(z, y, x) HU → (z, y, x) uint8 labels on the same grid."""
        box = self.kidney_box(hu, spacing)
        if box is None:
            return self.segment_crop(hu, spacing)
        return paste(self.segment_crop(hu[box], spacing, crop_body=False), box, hu.shape)


def make_segmenter(
    models: list[SegmentationModel],
    device: torch.device,
    *,
    batch_size: int = 8,
    tta: bool | None = None,
    coarse_models: list[SegmentationModel] | None = None,
    precision: str = "fp32",
    scales: tuple[float, ...] | None = None,
):
    """The segmenter the models need: sliding windows for 3D models, slice stacks for 2D/2.5D ones;
    ``tta`` True or False overrides the recipe's ``volumetric.mirror_tta`` (3D) or
    ``train.mirror_tta`` (2D/2.5D), None keeps it; ``precision`` is a resolved
    ``runtime.resolve_precision`` choice for every network; 2D/2.5D models also see the zooms of their
    ``train.tta_scales`` unless ``tta`` is False; ``scales`` replaces those zooms (the refine stage's
    in a cascade), to compare them without retraining. ``coarse_models`` localize the kidneys first: for
    3D models one box around both (coarse-to-fine), for 2.5D kidney-crop models one per kidney
    (``inference.cascade``)."""
    from nephroseg.inference.segmenter import Segmenter

    kinds = {is_volumetric(m) for m in models}
    if len(kinds) != 1:
        raise NephrosegInputError("--model", "cannot ensemble 3D models with 2D/2.5D models")
    if not kinds.pop():
        flips = any(m.recipe.train.mirror_tta for m in models) if tta is None else tta
        zooms = scales or tuple(sorted({z for m in models for z in m.recipe.train.tta_scales}))
        zooms = zooms if tta is not False else (1.0,)
        segmenter = Segmenter(
            models,
            device,
            batch_size=batch_size,
            tta=flips,
            precision=precision,
            scales=zooms,
            tumor_across_slices=any(m.recipe.train.tumor_across_slices for m in models),
        )
        refine = {m.recipe.preprocess.kidney_crop_mm is not None for m in models}
        if len(refine) != 1:
            raise NephrosegInputError("--model", "cannot ensemble kidney-crop models with whole-slice ones")
        if not refine.pop():
            if coarse_models:
                raise NephrosegInputError(
                    "--coarse-model", "a 2.5D model refines only when trained on kidney crops"
                )
            return segmenter
        if not coarse_models:
            raise NephrosegInputError(
                "--model", "a kidney-crop model needs --coarse-model to find the kidneys first"
            )
        if len({is_volumetric(m) for m in coarse_models}) != 1:
            raise NephrosegInputError("--coarse-model", "cannot ensemble 3D models with 2D/2.5D models")
        if any(m.recipe.preprocess.kidney_crop_mm is not None for m in coarse_models):
            raise NephrosegInputError(
                "--coarse-model", "is a kidney-crop model too: the kidneys are found by a whole-slice one"
            )
        from nephroseg.inference.cascade import KidneyCropSegmenter

        coarse_segmenter = make_segmenter(coarse_models, device, batch_size=batch_size, precision=precision)
        return KidneyCropSegmenter(coarse_segmenter, segmenter)
    if scales:
        raise ValueError("zoomed views are for 2D/2.5D models; 3D models see their windows as trained")
    if coarse_models and not all(map(is_volumetric, coarse_models)):
        raise NephrosegInputError(
            "--coarse-model",
            "a 3D model's coarse stage is a 3D model too (a 2.5D kidney finder serves 2.5D kidney-crop "
            "models)",
        )
    coarse = VolumetricSegmenter(coarse_models, device, precision=precision) if coarse_models else None
    return VolumetricSegmenter(models, device, mirror_tta=tta, coarse=coarse, precision=precision)
