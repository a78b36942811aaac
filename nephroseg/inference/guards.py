"""Checks ``nephroseg predict`` makes before any work: that the memory a volume needs fits the user's
limit, that the output folder can be written, and that the intensities and orientation look like CT's."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from nephroseg.errors import NephrosegInputError
from nephroseg.preprocess import inplane_shape
from nephroseg.preprocess.resample import resampled_shape

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)

# CT in Hounsfield units always holds fat (about -100) or air (-1000) and soft tissue above 100 HU.
# No negative voxel means MR, or CT stored without its rescale intercept; no voxel above 100 means
# intensities already normalized. Either way the model sees numbers unlike its training data.
_CT_LOWEST_MIN_HU = 0.0
_CT_HIGHEST_MAX_HU = 100.0


def parse_size(text: str | int, option: str = "--max-memory") -> int:
    """'512MB', '4GB', '4G', '1.5GiB', '1000000' → bytes. K, M, G and T are powers of 1024 whether
    written KB or KiB, as memory is sold."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise NephrosegInputError(option, f"'{text}' is not a memory size (e.g. 512MB, 4GB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def format_size(n_bytes: float) -> str:
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n_bytes >= factor:
            return f"{n_bytes / factor:.1f} {unit}"
    return f"{int(n_bytes)} B"


@torch.no_grad()
def activations_per_element(network: torch.nn.Module, input_shape: tuple[int, ...]) -> float:
    """Floats the network's layers output per input pixel (or voxel), from one forward pass on an
    input of ``input_shape`` (batch, channels, spatial…): the sum over leaf modules, an upper bound
    on what inference holds at once."""
    total = 0

    def count(_module, _inputs, output) -> None:
        nonlocal total
        stack = [output]
        while stack:
            item = stack.pop()
            if isinstance(item, torch.Tensor):
                total += item.numel()
            elif isinstance(item, list | tuple):
                stack.extend(item)
            elif isinstance(item, dict):
                stack.extend(item.values())

    leaves = [m for m in network.modules() if not any(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    was_training = network.training
    try:
        parameter = next(network.parameters())
        network.eval()
        network(torch.zeros(input_shape, dtype=parameter.dtype, device=parameter.device))
    finally:
        network.train(was_training)
        for hook in hooks:
            hook.remove()
    return total / float(np.prod(input_shape[2:]))


def activations_per_pixel(network: torch.nn.Module, in_slices: int, divisor: int) -> float:
    side = 4 * divisor
    return activations_per_element(network, (1, in_slices, side, side))


def activations_per_voxel(network: torch.nn.Module) -> float:
    """For a 3D U-Net: one forward on twice the smallest input its strides accept."""
    strides = getattr(getattr(network, "net", network), "strides", [[1, 1, 1]])
    divisor = np.prod(np.asarray(strides, dtype=np.int64), axis=0)
    return activations_per_element(network, (1, 1, *(int(max(8, 2 * d)) for d in divisor)))


def peak_bytes(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    models: list[tuple[float | None, int, int, int, float]],
    batch_size: int,
    across_slices: bool = False,
) -> int:
    """Estimated peak memory of segmenting one volume, following ``Segmenter`` step by step.

    ``shape`` (Z, H, W) and ``spacing`` are canonical; ``models`` holds, per ensemble member, its
    ``(spacing_mm, size divisor, in_slices k, classes C, activations A per pixel)`` (A from
    ``activations_per_pixel``). With V = Z·H·W, a member's resampled in-plane size (h, w) and padded
    size (h', w'), and B = min(batch_size, Z), in bytes:

    - reading:    V·12 (the float32 intensities, their canonical copy, the stored data up to 4 bytes)
    - segmenting: V·4 + V·1 (intensities, labels) + Σ B·k·h'·w'·4 (each member's current input)
                  + max (B + k − 1)·(H·W + 2·h·w + h'·w')·4 (one slab read, resampled, normalized
                  and padded) + max B·(k + 2C + A)·h'·w'·4 (input, logits, softmax, layer outputs)
                  + 3·B·C·H·W·4 (running sum, one member's probabilities, their quotient)
                  + 18·B·H·W with ``across_slices`` (``tumor_across_slices``: two batches' labels and
                  tumor margins, the margins padded and summed)

    The peak is the larger of the two: the volume is prepared a slab at a time, so no term but the
    first two grows with Z.
    """
    z, h, w = shape
    voxels = z * h * w
    batch = min(batch_size, z)
    inputs, slab, per_batch, classes = 0, 0, 0, 2
    for spacing_mm, divisor, k, num_classes, activations in models:
        mh, mw = inplane_shape((h, w), spacing[1:], spacing_mm)
        ph, pw = -(-mh // divisor) * divisor, -(-mw // divisor) * divisor
        inputs += batch * k * ph * pw * 4
        slab = max(slab, (batch + k - 1) * (h * w + 2 * mh * mw + ph * pw) * 4)
        per_batch = max(per_batch, int(batch * (k + 2 * num_classes + activations) * ph * pw * 4))
        classes = max(classes, num_classes)
    reading = voxels * 12
    segmenting = voxels * 5 + inputs + slab + per_batch + 3 * batch * classes * h * w * 4
    segmenting += 18 * batch * h * w if across_slices else 0
    return int(max(reading, segmenting))


def volumetric_peak_bytes(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    target_spacing: tuple[float, float, float],
    patch: tuple[int, int, int],
    *,
    chunk_slices: int,
    sw_batch_size: int,
    num_classes: int,
    activations: float,
    members: int = 1,
) -> int:
    """Estimated peak memory of ``VolumetricSegmenter`` on one volume (bytes), taking the whole volume
    as body (the crop only makes it smaller). With V the source voxels, R the voxels resampled to the
    target spacing, D the depth a z chunk is fed with (chunk plus half a patch each side, at most the
    volume), P a patch's voxels and K classes:

    - reading:    V·12 (as for 2.5D models)
    - resampling: V·5 + R·8 (the resampled image and the interpolation's float64-free temporary)
    - windows:    V·5 + R·5 (resampled image, its labels) + D·(R/z')·(8 + 3·K·4 + 4) (the chunk and
                  its normalized copy, MONAI's output and weight sums, the member total)
                  + sw_batch·(1 + A + 2K)·P·4 per member (input, layer outputs, logits and mirror sum)
    - back:       V·7 (labels resampled back to the source grid and pasted into the volume)
    """
    z, h, w = shape
    voxels = z * h * w
    rz, ry, rx = resampled_shape(shape, spacing, target_spacing)
    resampled = rz * ry * rx
    depth = min(rz, max(chunk_slices or 4 * patch[0], patch[0]) + 2 * (patch[0] // 2))
    chunk = depth * ry * rx
    patch_voxels = int(np.prod(patch))
    reading = voxels * 12
    resampling = voxels * 5 + resampled * 8
    windows = (
        voxels * 5
        + resampled * 5
        + chunk * (8 + 3 * num_classes * 4 + 4)
        + members * sw_batch_size * int((1 + activations + 2 * num_classes) * patch_voxels * 4)
    )
    back = voxels * 7 + resampled
    return int(max(reading, resampling, windows, back))


def resident_bytes() -> int:
    """This process's resident memory now (Linux); elsewhere its peak so far; 0 where neither is known."""
    try:
        with open("/proc/self/statm", encoding="ascii") as stream:
            return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS counts bytes, Linux KB


def check_memory(source: str | Path, needed: int, allowed: int, *, held: int = 0) -> None:
    """Refuse ``source`` when ``held`` (the process now) plus ``needed`` (the volume) exceeds ``allowed``."""
    if held + needed > allowed:
        share = f" ({format_size(held)} of it this process before the volume)" if held else ""
        raise NephrosegInputError(
            source,
            f"needs about {format_size(held + needed)} of memory at its peak{share}, more than --max-memory "
            f"{format_size(allowed)} allows (a smaller --batch-size helps only with the batch share)",
        )


def check_writable(target: str | Path) -> None:
    """Refuse before any work when the nearest existing folder of ``target`` cannot be written."""
    folder = Path(target).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise NephrosegInputError(folder, "cannot write here: permission denied")


def hounsfield_warning(hu: np.ndarray) -> str | None:
    """A sentence when the intensities do not look like CT in Hounsfield units, else None."""
    low, high = float(np.min(hu)), float(np.max(hu))
    if low >= _CT_LOWEST_MIN_HU:
        return (
            f"intensities {low:g} to {high:g} have no negative value, unlike CT in Hounsfield units "
            "(fat and air lie below 0): MR, or CT without its rescale intercept? predicting anyway"
        )
    if high <= _CT_HIGHEST_MAX_HU:
        return (
            f"intensities {low:g} to {high:g} reach no soft tissue above {_CT_HIGHEST_MAX_HU:g} HU: "
            "normalized data rather than Hounsfield units? predicting anyway"
        )
    return None


def orientation_warning(header: nib.Nifti1Header) -> str | None:
    """A sentence when a NIfTI header states no orientation (qform_code and sform_code both 0, as an
    ANALYZE conversion leaves it), else None: nibabel then places the axes by a fixed default, so a
    scan stored I-P-L is read as L-A-S and the model sees it on its side."""
    if "qform_code" not in header or "sform_code" not in header:
        return None
    if int(header["qform_code"]) > 0 or int(header["sform_code"]) > 0:
        return None
    assumed = "-".join(nib.aff2axcodes(header.get_best_affine()))
    return (
        f"the header states no orientation (qform_code and sform_code are 0), so its axes are read as "
        f"{assumed}; if the scan was stored otherwise the labels will be wrong: set the header's sform "
        "or qform (e.g. from the DICOM). predicting anyway"
    )
