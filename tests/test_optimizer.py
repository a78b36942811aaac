"""The recipes' optimizers: Adam and AdamW run fused, which must give PyTorch's reference update and
resume from a checkpoint's state to the same weights as an unbroken run."""

from __future__ import annotations

import copy

import pytest
import torch

from nephroseg.recipe import TrainSpec
from nephroseg.training.session import build_optimizer


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 3, 1))


def _steps(network: torch.nn.Module, optimizer: torch.optim.Optimizer, first: int, count: int) -> None:
    """``count`` updates with gradients drawn from the step number, so two runs see the same ones."""
    for step in range(first, first + count):
        generator = torch.Generator().manual_seed(step)
        for parameter in network.parameters():
            parameter.grad = torch.randn(parameter.shape, generator=generator)
        optimizer.step()


@pytest.mark.parametrize(("name", "reference"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_fused_adam_gives_the_reference_update(name: str, reference: type) -> None:
    spec = TrainSpec(optimizer=name, lr=1e-2, weight_decay=1e-2)
    fused_net, loop_net = _network(), _network()
    fused = build_optimizer(fused_net.parameters(), spec)
    assert fused.defaults["fused"] is True
    loop = reference(loop_net.parameters(), lr=1e-2, weight_decay=1e-2, foreach=False)
    _steps(fused_net, fused, 0, 20)
    _steps(loop_net, loop, 0, 20)
    start = _network()
    for got, want, before in zip(
        fused_net.parameters(), loop_net.parameters(), start.parameters(), strict=True
    ):
        assert not torch.equal(got, before)  # the weights did move
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_fused_adam_resumes_from_its_state_to_the_same_weights() -> None:
    spec = TrainSpec(optimizer="adam", lr=1e-2)
    unbroken = _network()
    optimizer = build_optimizer(unbroken.parameters(), spec)
    _steps(unbroken, optimizer, 0, 10)

    resumed = _network()
    optimizer = build_optimizer(resumed.parameters(), spec)
    _steps(resumed, optimizer, 0, 5)
    weights, state = copy.deepcopy(resumed.state_dict()), copy.deepcopy(optimizer.state_dict())
    resumed = _network()
    resumed.load_state_dict(weights)
    optimizer = build_optimizer(resumed.parameters(), spec)
    optimizer.load_state_dict(state)
    _steps(resumed, optimizer, 5, 5)
    for got, want in zip(resumed.parameters(), unbroken.parameters(), strict=True):
        assert torch.equal(got, want)
