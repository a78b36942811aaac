"""Slice-wise segmentation of a whole volume by one model or an ensemble.

Each model sees the volume as it was trained: resampled in-plane to its spacing, normalized, padded
to its size divisor, in 2.5D stacks of its number of slices. The volume is prepared a slab of
slices at a time and softmax probabilities are brought back to its own grid one batch of slices at
a time, averaged over models (and flips): beyond the volume and its labels, memory follows a batch,
never a (classes × volume) array nor a resampled copy of the volume.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nephroseg.inference.postprocess import postprocess_labels
from nephroseg.models import build_model, model_info
from nephroseg.preprocess import (
    inplane_shape,
    neighbour_indices,
    normalize_hu,
    pad_to_multiple,
    padding_value,
    resize_slices,
    unpad,
)
from nephroseg.recipe import AugmentSpec, Recipe
from nephroseg.runtime import autocast


@dataclass(eq=False)
class SegmentationModel:
    """A network with the recipe that says how to feed it."""

    network: nn.Module
    recipe: Recipe

    @property
    def divisor(self) -> int:
        return model_info(self.recipe.model.name).divisor

    @classmethod
    def from_checkpoint(cls, payload: dict, device: torch.device) -> SegmentationModel:
        recipe = Recipe.model_validate(payload["recipe"])
        network = build_model(recipe.model)
        network.load_state_dict(payload["model_state"])
        return cls(network.to(device).eval(), recipe)


def tta_flips(augment: AugmentSpec, tta: bool) -> list[tuple[int, ...]]:
    """The mirrorings a model may be averaged over: only those it was trained with. A model that
    never saw a vertically flipped slice (spine on top) scores it badly, and averaging that in
    costs accuracy instead of adding it."""
    if not tta:
        return [()]
    axes = [axis for axis, p in ((-1, augment.hflip_p), (-2, augment.vflip_p)) if p > 0]
    flips: list[tuple[int, ...]] = [()] + [(axis,) for axis in axes]
    return [*flips, (-2, -1)] if len(axes) == 2 else flips


def view_spacing(model: SegmentationModel, scale: float) -> float | None:
    """The in-plane spacing (mm) a model sees a slice at when zoomed by ``scale``."""
    spacing_mm = model.recipe.preprocess.spacing_mm
    return spacing_mm if spacing_mm is None or scale == 1.0 else spacing_mm / scale


def class_labels(scores: torch.Tensor, dim: int) -> np.ndarray:
    """uint8 argmax over the class axis ``dim``. The class axis is made the contiguous last one
    first: torch's CPU argmax over a strided axis of 2–3 classes took 15× longer (540 against 34 ms
    for 8 × 3 × 512²; docs/benchmarks.md), most of a 2.5D prediction's time on a 512² volume.
    Ties go to the lower label, as with a plain argmax."""
    return scores.movedim(dim, -1).contiguous().argmax(dim=-1).to(torch.uint8).numpy()


def tumor_across_slices(
    batches: Iterator[tuple[int, torch.Tensor]],
) -> Iterator[tuple[int, np.ndarray]]:
    """``(first slice, labels)`` from ``(first slice, probabilities (B, 3, H, W))`` batches in slice
    order: a voxel is foreground as its own slice says, and tumor rather than kidney where the tumor
    probability exceeds the kidney's summed over the slice and its two neighbours (none beyond the
    ends). A 2.5D model calls each slice alone; the neighbours steady its tumor call, which flickers
    on tumors nearly iso-dense to the kidney (docs/benchmarks.md, sixteenth demo round). One batch
    waits for the next one's first slice, so memory still follows a batch."""
    pending: tuple[int, np.ndarray, np.ndarray] | None = None  # a batch awaiting its next neighbour
    before: np.ndarray | None = None  # the margin of the slice before the pending batch
    for start, probs in batches:
        labels = class_labels(probs, dim=1)
        margin = (probs[:, 2] - probs[:, 1]).numpy()  # tumor minus kidney
        if pending is not None:
            first, pending_labels, pending_margin = pending
            yield first, _tumor_from_margins(pending_labels, pending_margin, before, margin[0])
            before = pending_margin[-1]
        pending = (start, labels, margin)
    if pending is not None:
        first, pending_labels, pending_margin = pending
        yield first, _tumor_from_margins(pending_labels, pending_margin, before, None)


def _tumor_from_margins(
    labels: np.ndarray, margin: np.ndarray, before: np.ndarray | None, after: np.ndarray | None
) -> np.ndarray:
    """``labels`` (B, H, W) with tumor against kidney decided on ``margin`` (tumor minus kidney)
    summed over each slice and its neighbours; ``before`` / ``after`` are the margins of the slices
    just outside the batch (None: the volume ends there)."""
    zero = np.zeros_like(margin[0])
    first = zero if before is None else before
    last = zero if after is None else after
    padded = np.concatenate([first[None], margin, last[None]])
    summed = padded[:-2] + padded[1:-1] + padded[2:]
    return np.where(labels > 0, np.uint8(1) + (summed > 0), np.uint8(0))


class Segmenter:
    def __init__(
        self,
        models: list[SegmentationModel],
        device: torch.device | str = "cpu",
        batch_size: int = 8,
        tta: bool = False,
        precision: str = "fp32",
        postprocess: bool | None = None,
        scales: tuple[float, ...] = (1.0,),
        tumor_across_slices: bool = False,
    ) -> None:
        """``precision``: a resolved ``runtime.resolve_precision`` choice; 'bf16' runs the networks under
        bfloat16 autocast (weights stay float32), 2.4× faster for resunet25d on CPUs with native
        bfloat16, 20× slower without it (docs/benchmarks.md). ``postprocess``: keep the largest kidney
        per side and no tumor away from it; by default when every member's training chose it on
        validation. ``scales``: each model also sees the slices zoomed by these factors (its grid's
        spacing divided by each), and the probabilities are averaged over them.
        ``tumor_across_slices``: tell tumor from kidney on the probabilities summed with the adjacent
        slices' (the function of that name)."""
        if not models:
            raise ValueError("a segmenter needs at least one model")
        classes = {m.recipe.model.num_classes for m in models}
        if len(classes) != 1:
            raise ValueError(f"ensemble members disagree on the number of classes: {sorted(classes)}")
        self.models = models
        self.num_classes = classes.pop()
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.tta = tta
        self.precision = precision
        if scales != (1.0,) and any(m.recipe.preprocess.spacing_mm is None for m in models):
            raise ValueError("zoomed views need models trained on a fixed grid (preprocess.spacing_mm)")
        self.scales = scales
        if tumor_across_slices and self.num_classes != 3:
            raise ValueError("telling tumor from kidney across slices needs the 3 KiTS classes")
        self.tumor_across_slices = tumor_across_slices
        chosen = all(m.recipe.train.postprocess == "components" for m in models)
        self.postprocess = chosen if postprocess is None else postprocess

    @torch.no_grad()
    def probabilities(
        self, hu: np.ndarray, spacing: tuple[float, float, float]
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(first slice, probabilities (B, C, H, W))`` over the volume, on its own grid."""
        out_hw = tuple(hu.shape[1:])
        views = [_ModelView(m, hu, spacing, self.device, z) for m in self.models for z in self.scales]
        n_slices = hu.shape[0]
        for start in range(0, n_slices, self.batch_size):
            centres = np.arange(start, min(start + self.batch_size, n_slices))
            total: torch.Tensor | None = None  # a single model without flips: its output, no copies
            for view in views:
                flips = tta_flips(view.model.recipe.augment, self.tta)
                weight = 1.0 / (len(flips) * len(views))  # the mean over flips, zooms and models
                for flip in flips:
                    with autocast(self.device, self.precision):
                        probs = view.probabilities(centres, flip, out_hw)
                    if weight != 1.0:
                        probs.mul_(weight)
                    total = probs if total is None else total.add_(probs)
            assert total is not None
            yield start, total

    def segment(self, hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
        """(Z, H, W) HU → (Z, H, W) uint8 labels on the same grid."""
        labels = np.empty(hu.shape, dtype=np.uint8)
        batches = self.probabilities(hu, spacing)
        if self.tumor_across_slices:
            labelled = tumor_across_slices(batches)
        else:
            labelled = ((start, class_labels(probs, dim=1)) for start, probs in batches)
        for start, batch_labels in labelled:
            labels[start : start + len(batch_labels)] = batch_labels
        return postprocess_labels(labels) if self.postprocess else labels


class _ModelView:
    """The volume as one model sees it, prepared a slab at a time: only the slices one batch of
    centres needs are resampled, normalized and padded, so memory follows the batch, not the volume.
    Every step works slice by slice, so slabs give exactly what the whole volume at once would."""

    def __init__(
        self, model: SegmentationModel, hu: np.ndarray, spacing, device: torch.device, scale: float = 1.0
    ) -> None:
        self.model = model
        self.device = device
        self.hu = hu
        self.k = model.recipe.model.in_slices
        self.model_hw = inplane_shape(hu.shape[1:], spacing[1:], view_spacing(model, scale))
        self._last: tuple[np.ndarray, torch.Tensor] | None = None  # (centres, stacks) of the last batch
        self.pad = (0, 0, 0, 0)

    def stacks(self, centres: np.ndarray) -> torch.Tensor:
        """(B, k, h', w') model input for ``centres``; reused across the flips of one batch."""
        if self._last is not None and np.array_equal(self._last[0], centres):
            return self._last[1]
        spec = self.model.recipe.preprocess
        indices = neighbour_indices(centres, len(self.hu), self.k)
        first, last = int(indices.min()), int(indices.max()) + 1
        resampled = resize_slices(np.asarray(self.hu[first:last], dtype=np.float32), self.model_hw)
        normalized = torch.from_numpy(normalize_hu(resampled.numpy(), spec))
        slab, self.pad = pad_to_multiple(normalized, self.model.divisor, padding_value(spec))
        stacks = slab[torch.from_numpy(indices - first)]
        self._last = (centres, stacks)
        return stacks

    def probabilities(
        self, centres: np.ndarray, flip: tuple[int, ...], out_hw: tuple[int, int]
    ) -> torch.Tensor:
        batch = self.stacks(centres).to(self.device)
        if flip:
            batch = batch.flip(flip)
        logits = self.model.network(batch)
        if flip:
            logits = logits.flip(flip)
        probs = unpad(torch.softmax(logits.float(), dim=1), self.pad).cpu()
        return resize_slices(probs, out_hw)
