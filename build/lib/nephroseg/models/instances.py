"""Semantic label slices ↔ object instances, the form a detector (Mask R-CNN) learns and predicts.

An instance is one 8-connected component of one foreground class. A kidney that holds a tumor is
a kidney component *with a hole* where the tumor is: classes never share a pixel, so painting the
instances back cannot let one class overwrite another and the round trip is exact.

Predicted instances may overlap; each pixel then takes the label of the highest-scoring instance
that covers it (ties: the higher label, so that the rule is deterministic and shared with
``maskrcnn.semantic_log_probs``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True, eq=False)
class Instance:
    label: int  # the semantic class (1 kidney, 2 tumor)
    mask: np.ndarray  # (H, W) bool
    box: tuple[int, int, int, int]  # (x1, y1, x2, y2), x2 and y2 exclusive, as torchvision wants


def semantic_to_instances(label_slice: np.ndarray) -> list[Instance]:
    """Every 8-connected component of every foreground class, by class then in raster order."""
    label_slice = np.asarray(label_slice)
    if label_slice.ndim != 2:
        raise ValueError(f"expected an (H, W) label slice, got shape {label_slice.shape}")
    instances: list[Instance] = []
    for cls in np.unique(label_slice):
        if cls == 0:
            continue
        components, _ = ndimage.label(label_slice == cls, structure=EIGHT_CONNECTED)
        for index, (rows, cols) in enumerate(ndimage.find_objects(components), start=1):
            box = (cols.start, rows.start, cols.stop, rows.stop)
            instances.append(Instance(int(cls), components == index, box))
    return instances


def instances_to_semantic(
    masks: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    shape: tuple[int, int],
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
) -> np.ndarray:
    """Paint instances (masks (K, H, W) bool or probabilities) into an (H, W) uint8 label map.

    Instances scoring below ``score_threshold`` are dropped; an instance covers the pixels where its
    mask is at least ``mask_threshold``. Painting in ascending (score, label) order lets the
    highest-scoring cover win every pixel.
    """
    semantic = np.zeros(shape, dtype=np.uint8)
    masks, labels, scores = np.asarray(masks), np.asarray(labels), np.asarray(scores)
    for k in np.lexsort((labels, scores)):
        if scores[k] >= score_threshold:
            semantic[masks[k] >= mask_threshold] = labels[k]
    return semantic
