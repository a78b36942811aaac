"""In-plane resampling and padding: every slice is brought to the spacing the model was trained at."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def inplane_shape(
    shape_hw: tuple[int, int], spacing_hw: tuple[float, float], target_mm: float | None
) -> tuple[int, int]:
    """Rows and columns after resampling to ``target_mm`` (unchanged when target is None)."""
    if target_mm is None:
        return (int(shape_hw[0]), int(shape_hw[1]))
    return tuple(max(1, round(n * s / target_mm)) for n, s in zip(shape_hw, spacing_hw, strict=True))  # type: ignore[return-value]


def resize_slices(
    array: np.ndarray | torch.Tensor, out_hw: tuple[int, int], *, label: bool = False
) -> torch.Tensor:
    """Resize (Z, H, W) or (Z, C, H, W) slice by slice. Images: bilinear (antialiased when shrinking);
    labels: nearest. Returns a float32 (or uint8 for labels) tensor."""
    tensor = torch.as_tensor(array)
    squeeze = tensor.ndim == 3
    if squeeze:
        tensor = tensor[:, None]
    if tuple(tensor.shape[-2:]) == tuple(out_hw):
        out = tensor
    elif label:
        out = F.interpolate(tensor.float(), size=out_hw, mode="nearest-exact").to(torch.uint8)
    else:
        shrinking = out_hw[0] < tensor.shape[-2] or out_hw[1] < tensor.shape[-1]
        out = F.interpolate(
            tensor.float(), size=out_hw, mode="bilinear", align_corners=False, antialias=shrinking
        )
    return out[:, 0] if squeeze else out


def pad_to_multiple(
    tensor: torch.Tensor, multiple: int, value: float
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad the last two axes symmetrically to a multiple of ``multiple``; returns the pad (l, r, t, b)."""
    h, w = tensor.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph or pw:
        tensor = F.pad(tensor, pad, value=value)
    return tensor, pad


def unpad(tensor: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    left, right, top, bottom = pad
    h, w = tensor.shape[-2:]
    return tensor[..., top : h - bottom, left : w - right]


def center_crop_or_pad(array: np.ndarray, size: tuple[int, int], value: float) -> np.ndarray:
    """Crop or pad the last two axes around the centre to ``size`` (training crops of fixed size)."""
    out = array
    for axis, target in zip((-2, -1), size, strict=True):
        n = out.shape[axis]
        if n > target:
            start = (n - target) // 2
            out = np.take(out, np.arange(start, start + target), axis=axis)
        elif n < target:
            before = (target - n) // 2
            widths = [(0, 0)] * out.ndim
            widths[axis] = (before, target - n - before)
            out = np.pad(out, widths, constant_values=value)
    return out
