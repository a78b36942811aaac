"""Multi-process training under ``torchrun``: process group set-up (NCCL on GPUs, Gloo on CPUs) and the
few collective steps the trainer needs. Without ``WORLD_SIZE`` > 1 everything is a no-op."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from nephroseg.errors import NephrosegInputError
from nephroseg.io.lock import exclusive_folder
from nephroseg.runtime import resolve_device

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this call created the process group, so it destroys it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def is_main_process() -> bool:
    """False in the ranks of ``torchrun`` other than 0: they keep quiet (rank 0 speaks for the run)."""
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed(device: str) -> tuple[DistContext, torch.device]:
    """Join the process group ``torchrun`` describes in the environment; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), resolve_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device)
    if torch_device.type == "cuda":
        torch_device = torch.device("cuda", local_rank)
        torch.cuda.set_device(torch_device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if torch_device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, owns), torch_device


@contextmanager
def process_group(device: str) -> Iterator[tuple[DistContext, torch.device]]:
    """The ``torchrun`` process group for the span of a command (joined, not re-created, when one
    is open: a cross-validation trains its folds in one group), left when the command ends."""
    ctx, torch_device = init_distributed(device)
    try:
        yield ctx, torch_device
    finally:
        shutdown(ctx)


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def share_main_outcome(ctx: DistContext, error: NephrosegInputError | None) -> None:
    """Every rank learns whether rank 0's step (one the others wait on) failed, and stops with its
    message; without this they would fail later at a collective with an unrelated connection error."""
    message = from_main(None if error is None else (error.source, error.problem), ctx)
    if error is not None:
        raise error
    if message is not None:
        source, problem = message
        raise NephrosegInputError(source, f"{problem} (reported by rank 0)")


def main_first(ctx: DistContext, prepare: Callable[[], T]) -> T:
    """``prepare()`` on rank 0 first (it fills the cache), then on the other ranks (they read
    it); a bad case rank 0 meets stops every rank with its message."""
    failure, result = None, None
    if ctx.is_main:
        try:
            result = prepare()
        except NephrosegInputError as err:
            failure = err
    share_main_outcome(ctx, failure)
    if not ctx.is_main:
        result = prepare()
    return result  # type: ignore[return-value]


def shutdown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def share_main_buffers(module: nn.Module, ctx: DistContext) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank. DistributedDataParallel averages
    gradients, so the parameters agree, but each rank's running statistics follow its own batches;
    after this the replicas equal what rank 0's checkpoint holds."""
    if ctx.active:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


def weight_checksums(module: nn.Module, ctx: DistContext) -> list[str]:
    """Every rank's SHA-1 of its parameters' bytes: equal digests mean bit-identical replicas."""
    digest = hashlib.sha1()
    for tensor in module.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    local = digest.hexdigest()
    if not ctx.active:
        return [local]
    gathered: list[str] = [""] * ctx.world_size
    dist.all_gather_object(gathered, local)
    return [str(v) for v in gathered]


def from_main(value, ctx: DistContext):
    """Rank 0's ``value`` on every rank (what rank 0 alone computed, such as validation scores)."""
    if not ctx.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextmanager
def training_folder(run_dir: Path, ctx: DistContext) -> Iterator[bool]:
    """Rank 0 holds the run folder for the whole job (``io.lock``: a second training started on it
    stops at once); yields whether the folder is new, which only rank 0's clean-up asks."""
    if not ctx.is_main:
        yield False
        return
    with exclusive_folder(run_dir, "training") as fresh:
        yield fresh


class TrainingObjective(nn.Module):
    """A model with its own objective (Mask R-CNN's detection losses) as a module whose forward is
    that loss, so that DistributedDataParallel, which synchronizes what its forward computed, can
    wrap it like any other network."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.network.training_loss(images, labels)


def training_forward(network: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """What a training step calls: the network (or its ``TrainingObjective``), wrapped in
    DistributedDataParallel under ``torchrun`` so that the ranks average their gradients."""
    forward = TrainingObjective(network) if hasattr(network, "training_loss") else network
    if not ctx.active:
        return forward
    return DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)
