"""Recipes load, validate at the edge and refuse unknown keys by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from nephroseg.errors import NephrosegInputError
from nephroseg.models import build_model
from nephroseg.recipe import RECIPES_DIR, available_recipes, find_recipes_dir, load_recipe, parse_overrides


def test_every_recipe_loads_and_builds_with_every_profile() -> None:
    assert "resunet25d" in available_recipes()
    for name in available_recipes():
        recipe = load_recipe(name)
        for profile in recipe.profiles:
            shrunk = load_recipe(name, profile=profile)
            assert shrunk.name == recipe.name
        build_model(load_recipe(name, profile="tiny").model if "tiny" in recipe.profiles else recipe.model)


def test_seed_004_set_up_is_stated_at_full_scale() -> None:
    recipe = load_recipe("resunet25d")
    assert recipe.model.in_slices == 3 and recipe.preprocess.size == 512
    assert recipe.augment.rotate_deg == 9 and recipe.augment.hflip_p == 0.5 and recipe.augment.pad_px == 12
    assert recipe.augment.crop_area == (0.92, 0.99) and recipe.augment.crop_ratio == (0.96, 1.04)
    assert recipe.train.loss == "ce_lovasz" and recipe.train.split.val_cases == 30


def test_profile_and_overrides_apply_in_order() -> None:
    recipe = load_recipe("resunet25d", profile="demo", overrides=["train.lr=3e-4", "model.width=0.5"])
    assert recipe.train.lr == pytest.approx(3e-4)
    assert recipe.model.width == 0.5
    assert recipe.preprocess.size == 128  # from the profile
    assert recipe.augment.pad_px == 12  # untouched by the profile


def test_model_options_merge_unless_the_model_changes() -> None:
    tiny = load_recipe("resunet25d", profile="tiny", overrides=["model.options.deep_supervision=2"])
    assert tiny.model.options == {"depth": 2, "deep_supervision": 2}  # the profile's depth is kept
    other = tiny.with_overrides({"model": {"name": "unet", "options": {"base": 8}}})
    assert other.model.options == {"base": 8}  # resunet25d's options do not reach another builder


def test_parse_overrides_builds_nested_values() -> None:
    assert parse_overrides(["a.b=1", "a.c=[1, 2]", "d=x"]) == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    assert parse_overrides(["train.lr=3e-4"]) == {"train": {"lr": 3e-4}}
    with pytest.raises(NephrosegInputError, match="not of the form"):
        parse_overrides(["novalue"])


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("name: x\ntrain: {epochs: 2, learning_rate: 0.1}\n")
    with pytest.raises(NephrosegInputError, match=r"r.yaml: recipe key 'train.learning_rate': unknown key"):
        load_recipe(path)


def test_wrong_type_is_named(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("name: x\ntrain: {batch_size: many}\n")
    with pytest.raises(NephrosegInputError, match=r"recipe key 'train.batch_size'"):
        load_recipe(path)


def test_inconsistent_values_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nmodel: {in_slices: 4}\n")
    with pytest.raises(NephrosegInputError, match="in_slices must be odd"):
        load_recipe(path)
    path.write_text("name: x\npreprocess: {hu_min: 10, hu_max: 0}\n")
    with pytest.raises(NephrosegInputError, match="hu_max must be greater"):
        load_recipe(path)


def test_unknown_recipe_and_profile() -> None:
    with pytest.raises(NephrosegInputError, match="unknown recipe"):
        load_recipe("no_such_recipe")
    with pytest.raises(NephrosegInputError, match="no profile 'huge'"):
        load_recipe("resunet25d", profile="huge")


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(NephrosegInputError, match="not valid YAML"):
        load_recipe(path)


def test_recipes_are_found_in_a_checkout_and_where_a_wheel_puts_them(tmp_path: Path) -> None:
    checkout = tmp_path / "repo"
    (checkout / "nephroseg").mkdir(parents=True)
    prefix = tmp_path / "venv"
    assert find_recipes_dir(checkout / "nephroseg", prefix) == prefix / "share" / "nephroseg" / "recipes"
    (checkout / "recipes").mkdir()
    assert find_recipes_dir(checkout / "nephroseg", prefix) == checkout / "recipes"
    assert Path(__file__).resolve().parents[1] / "recipes" == RECIPES_DIR  # this checkout's, as tests run
