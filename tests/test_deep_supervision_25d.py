"""The 2.5D Res-U-Net and nnU-Net's 2d network trained with deep supervision: the heads learn, the
checkpoint carries them, and prediction (evaluation mode: the full-size logits alone) writes a label
map on the source grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from nephroseg.inference import predict
from nephroseg.models import build_model
from nephroseg.recipe import load_recipe
from nephroseg.training import train
from nephroseg.training.checkpoint import load_checkpoint

HEADS_25D = [f"aux_heads.{i}.{p}" for i in (0, 1) for p in ("bias", "weight")]
HEADS_NNUNET2D = [f"net.deep_supervision_heads.0.conv.conv.{p}" for p in ("bias", "weight")]


@pytest.mark.parametrize(
    ("recipe_name", "overrides", "options", "heads"),
    [  # off by default in resunet25d; the nnunet2d recipe has it on
        ("resunet25d", ["model.options.deep_supervision=2"], {"depth": 2, "deep_supervision": 2}, HEADS_25D),
        ("nnunet2d", [], {"stages": 3, "deep_supervision": True}, HEADS_NNUNET2D),
    ],
)
def test_deep_supervision_trains_the_heads_and_predicts(
    recipe_name: str, overrides: list[str], options: dict, heads: list[str], kits_dir: Path, tmp_path: Path
) -> None:
    overrides = [*overrides, "train.iterations_per_epoch=3"]
    recipe = load_recipe(recipe_name, profile="tiny", overrides=overrides)
    assert recipe.model.options == options
    run = tmp_path / "run"
    result = train(kits_dir, recipe, run, seed=1, progress=False, tensorboard=False)
    assert result.steps == 3
    state = load_checkpoint(run / "checkpoints" / "last.pt")["model_state"]
    torch.manual_seed(1)  # the run builds its network right after seeding with its seed
    initial = build_model(recipe.model).state_dict()
    assert sorted(k for k in state if "heads." in k) == heads
    assert all(not torch.equal(state[k], initial[k]) for k in heads), "the heads received no gradient"

    case = kits_dir / "case_00000" / "imaging.nii.gz"
    written = predict(case, tmp_path / "pred", [run], progress=False)
    source = nib.load(case)
    label = nib.load(written[0])
    assert label.shape == source.shape
    assert (label.affine == source.affine).all()
    assert set(np.unique(np.asarray(label.dataobj)).tolist()) <= {0, 1, 2}
