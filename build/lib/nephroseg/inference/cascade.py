"""The 2.5D cascade: a coarse model finds the kidneys, a refine model segments kidney and tumor
again inside a box around each one (``preprocess.kidney_crop_mm``) on its finer grid.

Outside the boxes everything is background: the refine stage sees the whole kidney with its
tumor, and what the coarse pass finds elsewhere (the specks a low-resolution model leaves) is
dropped, as the largest-component post-processing would drop it.
"""

from __future__ import annotations

import numpy as np

from nephroseg.inference.postprocess import postprocess_labels
from nephroseg.inference.segmenter import Segmenter
from nephroseg.preprocess import kidney_boxes


class KidneyCropSegmenter:
    """Segment (Z, H, W) HU volumes with a coarse 2.5D segmenter and a kidney-crop refine segmenter."""

    def __init__(self, coarse: Segmenter, fine: Segmenter) -> None:
        widths = {m.recipe.preprocess.kidney_crop_mm for m in fine.models}
        if len(widths) != 1 or None in widths:
            raise ValueError("the refine models must all be kidney-crop models of one box width")
        self.coarse = coarse
        self.fine = fine
        self.half_width_mm: float = widths.pop()  # type: ignore[assignment]
        self.postprocess = fine.postprocess
        fine.postprocess = False  # decided on whole kidneys: applied once, to the pasted result
        # The boxes pick one component per side themselves, after clearing the midline. The coarse
        # model's own post-processing picks without that cut: a false blob in the pelvis joined
        # across the midline outgrew a found kidney and took its box (docs/benchmarks.md).
        coarse.postprocess = False

    def boxes(self, hu: np.ndarray, spacing: tuple[float, float, float]):
        """The refine stage's boxes, from the coarse pass's kidney and tumor."""
        return kidney_boxes(self.coarse.segment(hu, spacing), spacing, self.half_width_mm)

    def segment(self, hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
        """(Z, H, W) HU → (Z, H, W) uint8 labels on the same grid. Where two boxes overlap (near the
        spine), the higher label wins: tumor over kidney over background."""
        labels = np.zeros(hu.shape, dtype=np.uint8)
        for box in self.boxes(hu, spacing):
            np.maximum(labels[box], self.fine.segment(np.asarray(hu[box]), spacing), out=labels[box])
        return postprocess_labels(labels) if self.postprocess else labels
