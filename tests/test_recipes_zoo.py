"""Every seed recipe: loads (full scale and each profile), builds, and trains two steps through the
command line, then predicts; ``--weights`` starts a run from local weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_cli import run_cli

from nephroseg.models import build_model, model_info
from nephroseg.recipe import RECIPES_DIR, load_recipe

SEED_RECIPES = {
    "maskrcnn": "000",
    "deeplab_attn": "001",
    "unet512": "002",
    "unet256": "003",
    "fcn8s_v1": "003",
    "fcn8s_v2": "003",
    "linknet_resnet18": "003",
    "resunet25d": "004",
}


def test_every_seed_has_a_recipe() -> None:
    shipped = {p.stem for p in RECIPES_DIR.glob("*.yaml")}
    assert set(SEED_RECIPES) <= shipped
    for name, seed in SEED_RECIPES.items():
        assert load_recipe(name).source.startswith(seed), name


@pytest.mark.parametrize("name", sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
def test_recipe_and_profiles_load_and_build(name: str) -> None:
    recipe = load_recipe(name)
    for profile in recipe.profiles:
        load_recipe(name, profile=profile)
    tiny = load_recipe(name, profile="tiny")
    model = build_model(tiny.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    kind = model_info(tiny.model.name).input_kind
    assert (tiny.model.in_slices > 1) == (kind == "2.5d") or kind == "3d"


def test_seed_set_ups_are_stated_at_full_scale() -> None:
    s001 = load_recipe("deeplab_attn")
    assert (s001.train.lr, s001.train.weight_decay, s001.train.iterations_per_epoch) == (3e-4, 3e-5, 350)
    assert s001.train.split.kind == "kfold" and s001.train.split.folds == 5
    assert s001.preprocess.normalization == "zscore" and (s001.preprocess.hu_min, s001.preprocess.hu_max) == (
        -300,
        300,
    )
    s000 = load_recipe("maskrcnn")
    assert (s000.train.epochs, s000.train.batch_size) == (90, 50)
    s002 = load_recipe("unet512")
    assert (s002.preprocess.size, s002.train.loss, s002.train.lr, s002.train.batch_size) == (
        512,
        "ce",
        1e-3,
        4,
    )
    for name in ("unet256", "fcn8s_v1", "fcn8s_v2", "linknet_resnet18"):
        s003 = load_recipe(name)
        assert s003.train.split.ratios == (0.7, 0.2, 0.1) and s003.train.lr == 1e-4
        assert s003.train.batch_size == 8 and s003.augment.hflip_p and s003.augment.vflip_p
        assert s003.train.shuffle_buffer == 200  # BUFFER_SIZE, the tf.data shuffle
    assert load_recipe("unet256").preprocess.size == 256


@pytest.mark.parametrize("name", sorted(n for n in SEED_RECIPES if n != "resunet25d"))
def test_two_step_training_and_prediction_through_the_cli(
    name: str, trained_run, tmp_path: Path, capsys
) -> None:
    data, _ = trained_run
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--recipe", name, "--profile", "tiny"]
    code, _, err = run_cli([*args, "--device", "cpu", "--no-progress"], capsys)
    assert code == 0, err
    assert (run / "checkpoints" / "last.pt").is_file()
    code, _, err = run_cli(
        [
            "predict",
            "-i",
            str(data),
            "-o",
            str(tmp_path / "pred"),
            "--model",
            str(run),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    assert (tmp_path / "pred" / "case_00000.nii.gz").is_file()


def test_train_starts_from_local_weights(trained_run, tmp_path: Path, capsys) -> None:
    data, first = trained_run
    run = tmp_path / "warm"
    weights = first / "checkpoints" / "last.pt"
    args = ["train", "--data", str(data), "--out", str(run), "--recipe", "resunet25d", "--profile", "tiny"]
    code, _, err = run_cli(
        [*args, "--weights", str(weights), "--set", "train.lr=1e-12", "--no-progress"], capsys
    )
    assert code == 0, err
    # With a vanishing learning rate the new run's weights are the loaded ones.
    before = torch.load(weights, weights_only=True)["model_state"]
    after = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model_state"]
    conv = next(k for k in before if k.endswith("weight") and before[k].ndim == 4)
    torch.testing.assert_close(after[conv], before[conv], rtol=1e-6, atol=1e-9)


def test_train_refuses_weights_that_match_nothing(trained_run, tmp_path: Path, capsys) -> None:
    data, _ = trained_run
    weights = tmp_path / "other.pt"
    torch.save({"unrelated.weight": torch.zeros(2)}, weights)
    run = tmp_path / "refused"
    args = ["train", "--data", str(data), "--out", str(run), "--recipe", "resunet25d", "--profile", "tiny"]
    code, _, err = run_cli([*args, "--weights", str(weights), "--no-progress"], capsys)
    assert code == 2 and "no tensor matches" in err
    assert not run.exists()
