"""Recipes: a model plus its preprocessing, augmentation and training set-up, as validated data.

A recipe is a small YAML file in ``recipes/``. It states a seed system's own set-up at full scale;
named ``profiles`` hold overrides that shrink it (for a CPU, for tests), and ``--set key=value``
overrides single fields. Unknown keys and wrong types are refused with the key named.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nephroseg.errors import NephrosegInputError


def find_recipes_dir(package_dir: Path, prefix: Path) -> Path:
    """The project's ``recipes/``: beside the package in a checkout (the editable install of ``make``),
    else where a wheel puts it (``share/nephroseg/recipes`` under the environment's prefix)."""
    checkout = package_dir.parent / "recipes"
    return checkout if checkout.is_dir() else prefix / "share" / "nephroseg" / "recipes"


RECIPES_DIR = find_recipes_dir(Path(__file__).resolve().parent, Path(sys.prefix))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    name: str = "resunet25d"
    in_slices: int = Field(
        3, ge=1, description="adjacent axial slices stacked as channels (2.5D); 1 = plain 2D"
    )
    num_classes: int = Field(3, ge=2)
    width: float = Field(1.0, gt=0, description="channel multiplier; tests build tiny models with 1/8")
    options: dict[str, Any] = Field(
        default_factory=dict, description="architecture-specific keyword arguments"
    )

    @model_validator(mode="after")
    def _odd_context(self) -> ModelSpec:
        if self.in_slices % 2 == 0:
            raise ValueError("in_slices must be odd: the centre slice is the one predicted")
        return self


class PreprocessSpec(_Strict):
    hu_min: float = -300.0
    hu_max: float = 300.0
    normalization: Literal["window", "zscore"] = Field(
        "window",
        description="window: clip to [hu_min, hu_max] and scale to [-1, 1]; zscore: clip, then "
        "subtract the training foreground mean and divide by its std (nnU-Net's CT scheme)",
    )
    spacing_mm: float | None = Field(
        None, gt=0, description="in-plane spacing the model sees; None keeps the source"
    )
    size: int = Field(512, ge=16, description="in-plane training crop (pixels) after resampling")
    kidney_crop_mm: float | None = Field(
        None,
        gt=0,
        description="the refine stage of a 2.5D cascade: trained on, and applied to, in-plane boxes of "
        "this half-width around each kidney, found at prediction by a coarse model (--coarse-model)",
    )
    zscore_mean: float | None = None  # filled in from the training cohort when normalization is zscore
    zscore_std: float | None = None

    @model_validator(mode="after")
    def _window(self) -> PreprocessSpec:
        if self.hu_max <= self.hu_min:
            raise ValueError("hu_max must be greater than hu_min")
        return self


class AugmentSpec(_Strict):
    rotate_deg: float = Field(0.0, ge=0, le=180)
    hflip_p: float = Field(0.0, ge=0, le=1)
    vflip_p: float = Field(0.0, ge=0, le=1)
    pad_px: int = Field(0, ge=0, description="pad each side before the random resized crop (seed 004: 12)")
    crop_area: tuple[float, float] | None = Field(
        None, description="random-resized-crop area range, e.g. [0.92, 0.99]"
    )
    crop_ratio: tuple[float, float] | None = Field(None, description="random-resized-crop aspect range")
    intensity: bool = Field(
        False, description="nnU-Net's intensity augmentation: noise, blur, brightness, contrast, gamma"
    )


class SplitSpec(_Strict):
    kind: Literal["holdout", "ratio", "kfold"] = "holdout"
    val_cases: int | None = Field(
        None, ge=1, description="holdout: number of validation cases (seed 004: 30)"
    )
    val_fraction: float = Field(0.15, gt=0, lt=1)
    ratios: tuple[float, float, float] = (0.7, 0.2, 0.1)  # ratio split: train, val, test
    folds: int = Field(5, ge=2)
    fold: int = Field(0, ge=0)


class TrainSpec(_Strict):
    epochs: int = Field(50, ge=1)
    iterations_per_epoch: int = Field(250, ge=1, description="batches per epoch (seed 001: 350)")
    batch_size: int = Field(4, ge=1)
    crop_size: int | None = Field(
        None,
        ge=16,
        description="in-plane size of a training sample (pixels), at most preprocess.size: a smaller "
        "patch of the same spacing makes a step cheaper; prediction still tiles at preprocess.size",
    )
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    lr_schedule: Literal["constant", "poly", "cosine"] = "constant"
    loss: Literal["ce", "ce_lovasz", "dice_ce"] = "ce_lovasz"
    class_weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    lovasz_weight: float = Field(1.0, ge=0)
    tumor_slice_fraction: float = Field(
        0.4, ge=0, le=1, description="share of sampled slices that show tumor"
    )
    kidney_slice_fraction: float = Field(0.4, ge=0, le=1, description="share that show kidney (tumor or not)")
    tumor_sampling: Literal["slice", "component"] = Field(
        "slice",
        description="how a tumor sample is drawn: a tumor slice of a random case (a large tumor, on "
        "more slices, is drawn more often), or a random tumor of a random case, then one of its "
        "slices (a small satellite as often as the main tumor)",
    )
    shuffle_buffer: int | None = Field(
        None,
        ge=1,
        description="seed 003's tf.data order: every training slice in file order, endlessly, through a "
        "shuffle buffer of this many slices (the tumor and kidney fractions must then be 0)",
    )
    val_every: int = Field(1, ge=1, description="validate every this many epochs, and after the last")
    val_smoothing: float = Field(
        0.9,
        ge=0,
        lt=1,
        description="the best checkpoint is the one where the moving average of the validation "
        "score peaks (weight of the previous average per epoch; nnU-Net's 0.9); 0 takes the raw peak",
    )
    select_on: Literal["composite", "kidney_tumor"] = Field(
        "composite",
        description="the validation score that chooses the best checkpoint: the KiTS composite Dice, "
        "or kidney+tumor Dice for a cascade's kidney finder, whose labels only place the boxes",
    )
    num_workers: int = Field(0, ge=0)
    postprocess: Literal["auto", "none", "components"] = Field(
        "none",
        description="largest kidney per side, no tumor away from it; auto: kept only when it raises "
        "the validation composite Dice (nnU-Net), the choice stored with the checkpoint",
    )
    mirror_tta: bool = Field(
        False,
        description="2D/2.5D inference averages the logits over the flips the model was trained with "
        "(predict --tta / --no-tta overrides)",
    )
    tta_scales: tuple[Annotated[float, Field(gt=0)], ...] = Field(
        (1.0,),
        min_length=1,
        description="2D/2.5D inference on a fixed grid also sees each slice zoomed by these factors "
        "(spacing divided by each) and averages the probabilities; --no-tta uses 1 alone",
    )
    tumor_across_slices: bool = Field(
        False,
        description="2D/2.5D inference tells tumor from kidney on the probabilities summed with the two "
        "adjacent slices' (foreground stays each slice's own call)",
    )
    ema_decay: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="keep an exponential moving average of the weights (decay per step); validation, "
        "the best checkpoint and inference use the average",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: forward pass under bfloat16 autocast (1.36x faster on bf16 CPUs)"
    )
    split: SplitSpec = Field(default_factory=SplitSpec)

    @model_validator(mode="after")
    def _fractions(self) -> TrainSpec:
        if self.tumor_slice_fraction + self.kidney_slice_fraction > 1:
            raise ValueError("tumor_slice_fraction + kidney_slice_fraction must not exceed 1")
        if self.shuffle_buffer and (self.tumor_slice_fraction or self.kidney_slice_fraction):
            raise ValueError(
                "shuffle_buffer streams every slice in file order: set tumor_slice_fraction and "
                "kidney_slice_fraction to 0, or shuffle_buffer to null"
            )
        return self


class VolumetricSpec(_Strict):
    """3D patch-based (nnU-Net-class) training and sliding-window inference; None for 2D/2.5D recipes."""

    patch_size: tuple[int, int, int] = Field((128, 128, 128), description="(z, y, x) voxels")
    target_spacing: tuple[float, float, float] | None = Field(
        None, description="(z, y, x) mm; None: planned from the dataset fingerprint (nnU-Net's rule)"
    )
    anisotropy_threshold: float = Field(3.0, gt=1, description="spacing ratio treated as anisotropic")
    oversample_foreground: float = Field(
        0.34, ge=0, le=1, description="share of patches centred on a tumor (preferred) or kidney voxel"
    )
    deep_supervision: bool = True
    label_resampling: Literal["nearest", "linear"] = Field(
        "linear", description="linear: each label interpolated on its own, then argmax (nnU-Net)"
    )
    crop_to_body: bool = True
    body_threshold_hu: float = Field(-500.0, description="voxels above this are body when cropping")
    augment: bool = True
    sw_overlap: float = Field(0.5, ge=0, lt=1, description="sliding-window overlap at inference")
    sw_batch_size: int = Field(2, ge=1)
    mirror_tta: bool = Field(False, description="average over the 8 mirrorings at inference")
    chunk_slices: int = Field(
        0, ge=0, description="inference in z chunks of this many model slices; 0: 4 patch depths"
    )
    postprocess: Literal["auto", "none", "components"] = Field(
        "auto",
        description="components: keep the largest component per kidney side and drop tumor that touches "
        "the kidney on under 2 % of its boundary; auto: decided on the validation cases",
    )


class Recipe(_Strict):
    name: str
    source: str = Field("", description="the seed report this recipe reproduces")
    description: str = ""
    model: ModelSpec = Field(default_factory=ModelSpec)
    preprocess: PreprocessSpec = Field(default_factory=PreprocessSpec)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    volumetric: VolumetricSpec | None = None
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict, description="named override sets")

    @model_validator(mode="after")
    def _crop_fits_tile(self) -> Recipe:
        if self.train.crop_size and self.train.crop_size > self.preprocess.size:
            raise ValueError(
                f"train.crop_size {self.train.crop_size} exceeds preprocess.size {self.preprocess.size}"
            )
        return self

    def with_overrides(self, overrides: dict[str, Any], where: str = "override") -> Recipe:
        """Overrides merged key by key (``model.options`` too); a new model name starts its options
        afresh, since options belong to one model's builder."""
        base = self.model_dump(mode="json")
        model = overrides.get("model")
        if isinstance(model, dict) and model.get("name", base["model"]["name"]) != base["model"]["name"]:
            base["model"]["options"] = {}
        return _validate(_deep_merge(base, overrides), where)


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """A recipe file given by path, or by name from the project's ``recipes/`` folder."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = RECIPES_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        known = ", ".join(available_recipes()) or "none"
        raise NephrosegInputError(name_or_path, f"unknown recipe (known: {known})")
    return candidate


def load_recipe(
    name_or_path: str | Path, *, profile: str | None = None, overrides: list[str] | None = None
) -> Recipe:
    """Load, apply a profile and ``key=value`` overrides, validate."""
    path = recipe_path(name_or_path)
    if not path.exists():
        raise NephrosegInputError(path, "recipe file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise NephrosegInputError(path, f"not valid YAML ({err})") from err
    except UnicodeDecodeError as err:
        raise NephrosegInputError(
            path, f"not a text file in UTF-8 ({err.reason} at byte {err.start})"
        ) from err
    if not isinstance(raw, dict):
        raise NephrosegInputError(path, "a recipe must be a mapping of sections")
    recipe = _validate(raw, str(path))
    if profile:
        if profile not in recipe.profiles:
            known = ", ".join(sorted(recipe.profiles)) or "none"
            raise NephrosegInputError(path, f"no profile '{profile}' (profiles: {known})")
        recipe = recipe.with_overrides(recipe.profiles[profile], f"{path} profile '{profile}'")
    if overrides:
        recipe = recipe.with_overrides(parse_overrides(overrides), "--set")
    return recipe


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.lr=3e-4", "model.width=0.5"]`` → nested dict; values are parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise NephrosegInputError("--set", f"'{item}' is not of the form section.key=value")
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _scalar(value)
    return nested


def _scalar(text: str) -> Any:
    """YAML's reading of a value, except that '3e-4' is a number (YAML 1.1 wants '3.0e-4')."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _validate(raw: dict[str, Any], where: str) -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise NephrosegInputError(where, f"recipe key '{key}': {message}") from err
