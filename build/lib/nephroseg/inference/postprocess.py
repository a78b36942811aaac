"""Post-processing of a kidney/tumor label map: at most one kidney per side, no stray tumor, no tumor
that merely touches the kidney.

nnU-Net decides on validation data whether keeping the largest connected component helps; here the
trainer compares the validation composite Dice with and without this step and stores the choice in
the checkpoint's recipe (``volumetric.postprocess``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nephroseg.preprocess.kidney_boxes import largest_component_per_side
from nephroseg.preprocess.resample import box_with_margin

# A renal tumor grows out of the kidney: on the 30 KiTS19 masks every tumor (bar one-voxel specks)
# shares 21 % or more of its boundary voxels with the kidney. A neighbouring organ taken for tumor
# touches the predicted kidney on 0.3–6 %; a true tumor beside an under-drawn kidney was seen at 2.2 %,
# so the threshold stays low (docs/benchmarks.md, "Tumor that merely touches the kidney").
MIN_KIDNEY_CONTACT = 0.02


def keep_kidney_components(labels: np.ndarray, midline: float | None = None) -> np.ndarray:
    """Keep the largest foreground (kidney + tumor) component on each side of the volume's midline
    (patient right and left: canonical x axis; ``midline`` in this array's columns, by default its
    centre); every other foreground component becomes background."""
    components, keep = largest_component_per_side(labels > 0, midline)
    if components.max() <= 1:
        return labels
    out = labels.copy()
    out[~np.isin(components, keep)] = 0
    return out


def tumor_kidney_contact(labels: np.ndarray) -> tuple[np.ndarray, dict[int, float]]:
    """The tumor components (``ndimage.label``'s) and, for each, the share of its boundary voxels
    (those with a face neighbour outside it, or on the array's edge) that have a kidney voxel as a
    face neighbour."""
    components, count = ndimage.label(labels == 2)
    contact: dict[int, float] = {}
    if count == 0:  # no tumor: skip the kidney's dilation, run on every prediction
        return components, contact
    near_kidney = ndimage.binary_dilation(labels == 1)
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        inside = components[box] == index
        boundary = inside & ~ndimage.binary_erosion(inside)
        contact[index] = float(np.count_nonzero(boundary & near_kidney[box]) / np.count_nonzero(boundary))
    return components, contact


def drop_detached_tumor(labels: np.ndarray, min_contact: float = MIN_KIDNEY_CONTACT) -> np.ndarray:
    """Tumor components touching the kidney on less than ``min_contact`` of their boundary become
    background: the spleen or liver beside a kidney, called tumor, stays within any distance margin
    but touches the kidney only at its edge."""
    components, contact = tumor_kidney_contact(labels)
    detached = [index for index, share in contact.items() if share < min_contact]
    if not detached:
        return labels
    out = labels.copy()
    out[np.isin(components, detached)] = 0
    return out


def postprocess_labels(labels: np.ndarray) -> np.ndarray:
    """Both steps, on the box around the foreground only: the component labels (4 bytes a voxel) then
    cover the kidneys, not a 512×512×1000 volume. Tumor away from the kidney touches none of it, so the
    contact rule also drops every tumor island outside the kidney region."""
    box = box_with_margin(labels > 0, (1, 1, 1))
    if box is None:
        return labels
    midline = labels.shape[2] / 2.0 - box[2].start
    out = labels.copy()
    out[box] = drop_detached_tumor(keep_kidney_components(labels[box], midline))
    return out
