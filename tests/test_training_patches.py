"""``train.crop_size``: the 2.5D trainer learns from patches smaller than the prediction tile (cheaper
steps at the same spacing), while validation and prediction still run on whole tiles."""

from __future__ import annotations

from pathlib import Path

from nephroseg import training
from nephroseg.recipe import load_recipe
from nephroseg.training.checkpoint import load_checkpoint
from nephroseg.training.trainer import build_model as trainer_build_model


def test_training_sees_patches_validation_whole_tiles(kits_dir: Path, tmp_path: Path, monkeypatch) -> None:
    seen: dict[bool, set[tuple[int, ...]]] = {True: set(), False: set()}

    def recording_build(spec):
        network = trainer_build_model(spec)
        network.register_forward_pre_hook(
            lambda module, args: seen[module.training].add(tuple(args[0].shape[-2:]))
        )
        return network

    monkeypatch.setattr("nephroseg.training.trainer.build_model", recording_build)
    overrides = ["train.crop_size=16", "train.iterations_per_epoch=3", "train.batch_size=2"]
    recipe = load_recipe("resunet25d", profile="tiny", overrides=overrides)
    assert recipe.preprocess.size == 32
    result = training.train(kits_dir, recipe, tmp_path / "run", seed=0, progress=False, tensorboard=False)
    assert seen[True] == {(16, 16)}  # every training batch is a 16 px patch
    assert seen[False] and all(h % 32 == 0 and w % 32 == 0 for h, w in seen[False])  # whole tiles
    assert result.steps == 3
    saved = load_checkpoint(result.best_checkpoint)
    assert saved["recipe"]["train"]["crop_size"] == 16 and saved["recipe"]["preprocess"]["size"] == 32
