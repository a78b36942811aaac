"""2.5D training samples: a stack of adjacent slices and the centre slice's label, cropped around
what matters. Tumor-bearing slices are drawn on purpose (the tumor is a few per mille of the voxels),
and crops are centred near the structure that made the slice interesting.

Every sample carries its own seed, drawn by the sampler from (run seed, epoch), so a run gives the
same batches whatever the number of data-loader workers and whether or not it was resumed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from nephroseg.data.augment import (
    apply_augmentation,
    apply_intensity,
    build_augmentation,
    build_intensity_augmentation,
)
from nephroseg.preprocess import PreparedCase, normalize_hu, padding_value, slice_stacks
from nephroseg.recipe import AugmentSpec, PreprocessSpec, TrainSpec

ANY, KIDNEY, TUMOR = 0, 1, 2  # what a sample was drawn for; also the label a crop is centred on


@dataclass(frozen=True)
class SampleKey:
    case: int
    slice: int
    focus: int  # ANY, KIDNEY or TUMOR
    seed: int


class SliceSampler(Sampler[SampleKey]):
    """``iterations × batch_size`` keys per epoch: a share from tumor slices, a share from kidney
    slices, the rest from anywhere in the volume; or, with ``shuffle_buffer``, seed 003's stream.

    Under ``torchrun`` rank r of ``world_size`` takes every world_size-th key of one stream as long
    as all ranks' keys together (as ``DistributedSampler`` shares a dataset), so the ranks never
    draw the same sample and one process alone draws exactly the keys it always drew."""

    def __init__(
        self, cases: list[PreparedCase], spec: TrainSpec, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.cases = cases
        self.spec = spec
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.with_tumor = [i for i, c in enumerate(cases) if len(c.tumor_slices)]
        self.with_kidney = [i for i, c in enumerate(cases) if len(c.kidney_slices)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.spec.iterations_per_epoch * self.spec.batch_size

    def __iter__(self) -> Iterator[SampleKey]:
        every_rank = len(self) * self.world_size
        if self.spec.shuffle_buffer:
            start = self.epoch * every_rank  # one stream for the whole run, so epochs continue it
            keys = itertools.islice(self._buffered_stream(), start, start + every_rank)
        else:
            keys = itertools.islice(self._weighted_stream(), every_rank)
        return itertools.islice(keys, self.rank, None, self.world_size)

    def _weighted_stream(self) -> Iterator[SampleKey]:
        rng = np.random.default_rng([self.seed, self.epoch])
        tumor_share = self.spec.tumor_slice_fraction
        kidney_share = tumor_share + self.spec.kidney_slice_fraction
        while True:
            draw = rng.random()
            if draw < tumor_share and self.with_tumor:
                case = int(rng.choice(self.with_tumor))
                z, focus = self._tumor_slice(self.cases[case], rng), TUMOR
            elif draw < kidney_share and self.with_kidney:
                case = int(rng.choice(self.with_kidney))
                z, focus = int(rng.choice(self.cases[case].kidney_slices)), KIDNEY
            else:
                case = int(rng.integers(len(self.cases)))
                z, focus = int(rng.integers(len(self.cases[case].hu))), ANY
            yield SampleKey(case, z, focus, int(rng.integers(2**31)))

    def _tumor_slice(self, case: PreparedCase, rng: np.random.Generator) -> int:
        if self.spec.tumor_sampling == "component":
            tumors = case.tumor_components
            return int(rng.choice(tumors[int(rng.integers(len(tumors)))]))
        return int(rng.choice(case.tumor_slices))

    def _buffered_stream(self) -> Iterator[SampleKey]:
        """Seed 003's tf.data pipeline, ``shuffle(buffer)`` over the slices in file order (case by case,
        repeated): each key is drawn at random from the next ``buffer`` slices of the stream, so the
        order is shuffled only locally. Rebuilt from the start for each epoch: resumable, deterministic."""
        rng = np.random.default_rng([self.seed, 3])
        order = itertools.cycle([(c, z) for c, case in enumerate(self.cases) for z in range(len(case.hu))])
        buffer = list(itertools.islice(order, self.spec.shuffle_buffer))
        for incoming in order:
            pick = int(rng.integers(len(buffer)))
            (case, z), buffer[pick] = buffer[pick], incoming
            yield SampleKey(case, z, ANY, int(rng.integers(2**31)))


class SliceDataset(Dataset):
    """Map a ``SampleKey`` to ``(image (k, S, S) float32, label (S, S) int64)``, S the sample size."""

    def __init__(
        self,
        cases: list[PreparedCase],
        preprocess: PreprocessSpec,
        augment: AugmentSpec,
        in_slices: int,
        size: int | None = None,
    ) -> None:
        """``size``: the sample's side in pixels (a training patch), by default the prediction tile's."""
        self.cases = cases
        self.preprocess = preprocess
        self.in_slices = in_slices
        self.size = size or preprocess.size
        self.fill = padding_value(preprocess)
        self.augmentation = build_augmentation(augment, self.size, self.fill)
        self.intensity = build_intensity_augmentation(augment)

    def __len__(self) -> int:
        return sum(len(c.hu) for c in self.cases)

    def __getitem__(self, key: SampleKey) -> tuple[torch.Tensor, torch.Tensor]:
        case = self.cases[key.case]
        rng = np.random.default_rng(key.seed)
        label = np.asarray(case.label[key.slice])
        top, left = self._crop_origin(label, key.focus, rng)
        rows, cols = slice(top, top + self.size), slice(left, left + self.size)
        stack = slice_stacks(case.hu, [key.slice], self.in_slices)[0]
        image = normalize_hu(self._window(stack, rows, cols, self.preprocess.hu_min - 1), self.preprocess)
        target = self._window(label, rows, cols, 0)
        image_t, label_t = apply_augmentation(
            self.augmentation, torch.from_numpy(image), torch.from_numpy(target.astype(np.int64)), key.seed
        )
        image_t = apply_intensity(self.intensity, image_t.float(), key.seed)
        return image_t.contiguous(), label_t.long().contiguous()

    def _crop_origin(self, label: np.ndarray, focus: int, rng: np.random.Generator) -> tuple[int, int]:
        """Top-left corner of the crop: around a random voxel of the focus class, jittered so the
        structure is not always in the centre; uniform when the slice is drawn for context."""
        h, w = label.shape
        size = self.size
        points = np.argwhere(label >= focus) if focus != ANY else np.empty((0, 2))
        if len(points):
            cy, cx = points[rng.integers(len(points))]
            jitter = rng.integers(-size // 4, size // 4 + 1, size=2)
            top, left = cy - size // 2 + jitter[0], cx - size // 2 + jitter[1]
        else:
            top = rng.integers(min(0, h - size), max(0, h - size) + 1)
            left = rng.integers(min(0, w - size), max(0, w - size) + 1)
        # Keep the crop on the image where the image is large enough; pad otherwise.
        top = int(np.clip(top, min(0, h - size), max(0, h - size)))
        left = int(np.clip(left, min(0, w - size), max(0, w - size)))
        return top, left

    @staticmethod
    def _window(array: np.ndarray, rows: slice, cols: slice, fill: float) -> np.ndarray:
        """array[..., rows, cols] with out-of-range parts filled (crops may hang over the edge)."""
        h, w = array.shape[-2:]
        out = np.full(
            (*array.shape[:-2], rows.stop - rows.start, cols.stop - cols.start), fill, dtype=np.float32
        )
        r0, r1 = max(rows.start, 0), min(rows.stop, h)
        c0, c1 = max(cols.start, 0), min(cols.stop, w)
        if r1 > r0 and c1 > c0:
            out[..., r0 - rows.start : r1 - rows.start, c0 - cols.start : c1 - cols.start] = array[
                ..., r0:r1, c0:c1
            ]
        return out
