"""2.5D input: k adjacent axial slices stacked as channels to predict the centre one (seeds 001, 004)."""

from __future__ import annotations

import numpy as np


def neighbour_indices(centres: np.ndarray, n_slices: int, k: int) -> np.ndarray:
    """(len(centres), k) slice indices around each centre, edges replicated (index clipped)."""
    half = k // 2
    offsets = np.arange(-half, half + 1)
    return np.clip(np.asarray(centres)[:, None] + offsets[None, :], 0, n_slices - 1)


def slice_stacks(volume: np.ndarray, centres: np.ndarray | list[int], k: int) -> np.ndarray:
    """(len(centres), k, H, W) stacks from a (Z, H, W) volume."""
    centres = np.asarray(centres)
    return volume[neighbour_indices(centres, volume.shape[0], k)]
