"""The weight average (``train.ema_decay``): the arithmetic of its warm-up, the checkpoint that
carries it, and a resumed run that ends where an uninterrupted one does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nephroseg.recipe import load_recipe
from nephroseg.training import train
from nephroseg.training.checkpoint import load_checkpoint
from nephroseg.training.session import weight_average


def test_weight_average_follows_the_warmed_up_decay() -> None:
    network = torch.nn.Linear(1, 1, bias=False)
    averaged = weight_average(network, decay=0.2)
    assert averaged is not None
    for value in (1.0, 3.0, 7.0):
        with torch.no_grad():
            network.weight.fill_(value)
        averaged.update_parameters(network)
    # First update copies (1.0). Second: d = min(0.2, 2/11) = 2/11 → 1·2/11 + 3·9/11.
    # Third: d = min(0.2, 3/12) = 0.2 → previous·0.2 + 7·0.8.
    second = 1.0 * 2 / 11 + 3.0 * 9 / 11
    expected = second * 0.2 + 7.0 * 0.8
    assert averaged.module.weight.item() == pytest.approx(expected, rel=1e-6)
    assert weight_average(network, decay=None) is None


def _recipe(epochs: int):
    overrides = [f"train.epochs={epochs}", "train.iterations_per_epoch=4", "train.ema_decay=0.9"]
    return load_recipe("resunet25d", profile="tiny", overrides=overrides)


def test_checkpoint_carries_the_average_and_resumes_to_identical_weights(
    kits_dir: Path, tmp_path: Path
) -> None:
    straight = train(kits_dir, _recipe(2), tmp_path / "straight", seed=1, progress=False, tensorboard=False)
    state = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")
    trained, averaged = state["train_model_state"], state["model_state"]
    moved = [name for name, tensor in trained.items() if tensor.is_floating_point()]
    assert any(not torch.equal(trained[name], averaged[name]) for name in moved)
    assert int(state["average_state"]["n_averaged"]) == 8

    split_run = tmp_path / "resumed"
    train(kits_dir, _recipe(1), split_run, seed=1, progress=False, tensorboard=False)
    train(kits_dir, _recipe(2), split_run, seed=1, resume=True, progress=False, tensorboard=False)
    resumed = load_checkpoint(split_run / "checkpoints" / "last.pt")
    for key in ("model_state", "train_model_state"):
        for name, tensor in state[key].items():
            assert torch.equal(tensor, resumed[key][name]), (key, name)
