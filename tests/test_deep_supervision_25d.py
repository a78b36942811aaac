"""The 2.5D Res-U-Net trained with deep supervision: the heads learn, the checkpoint carries them,
and prediction (evaluation mode: the full-size logits alone) writes a label map on the source grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import torch

from nephroseg.inference import predict
from nephroseg.models import build_model
from nephroseg.recipe import load_recipe
from nephroseg.training import train
from nephroseg.training.checkpoint import load_checkpoint

OVERRIDES = ["model.options.deep_supervision=2", "train.iterations_per_epoch=3"]


def test_deep_supervision_trains_the_heads_and_predicts(kits_dir: Path, tmp_path: Path) -> None:
    recipe = load_recipe("resunet25d", profile="tiny", overrides=OVERRIDES)
    run = tmp_path / "run"
    result = train(kits_dir, recipe, run, seed=1, progress=False, tensorboard=False)
    assert result.steps == 3
    state = load_checkpoint(run / "checkpoints" / "last.pt")["model_state"]
    torch.manual_seed(1)  # the run builds its network right after seeding with its seed
    initial = build_model(recipe.model).state_dict()
    heads = [k for k in state if k.startswith("aux_heads.")]
    assert sorted(heads) == [f"aux_heads.{i}.{p}" for i in (0, 1) for p in ("bias", "weight")]
    assert all(not torch.equal(state[k], initial[k]) for k in heads), "the heads received no gradient"

    case = kits_dir / "case_00000" / "imaging.nii.gz"
    written = predict(case, tmp_path / "pred", [run], progress=False)
    source = nib.load(case)
    label = nib.load(written[0])
    assert label.shape == source.shape
    assert (label.affine == source.affine).all()
