"""Models are registered by name and built from a recipe's ``model`` section.

Adding a model = one module with a ``@register_model`` builder, its line in ``MODEL_MODULES`` and one
recipe. A model's module is imported when its name is first looked up, so that predicting with the
2.5D Res-U-Net does not pay for torchvision's detection models or MONAI's networks (seconds of
start-up on a CPU, measured in ``docs/benchmarks.md``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

from nephroseg.errors import NephrosegInputError
from nephroseg.recipe import ModelSpec

InputKind = Literal["2d", "2.5d", "3d"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    build: Callable[..., nn.Module]
    input_kind: InputKind
    source: str  # the seed report (or paper) the architecture comes from
    description: str
    divisor: int  # input height and width must be multiples of this


# name → the module whose ``@register_model`` defines it (imported on first look-up)
MODEL_MODULES: dict[str, str] = {
    "deeplab_attn": "nephroseg.models.deeplab_attn",
    "dynunet3d": "nephroseg.models.dynunet3d",
    "fcn8s_v1": "nephroseg.models.fcn8s",
    "fcn8s_v2": "nephroseg.models.fcn8s",
    "linknet_resnet18": "nephroseg.models.linknet",
    "maskrcnn": "nephroseg.models.maskrcnn",
    "nnunet2d": "nephroseg.models.dynunet2d",
    "resunet25d": "nephroseg.models.resunet25d",
    "unet": "nephroseg.models.unet",
}

_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, input_kind: InputKind, source: str, description: str, divisor: int):
    """Decorator for a builder ``f(in_channels, num_classes, width, **options) -> nn.Module``."""

    def decorate(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' registered twice")
        if MODEL_MODULES.get(name) != build.__module__:
            raise ValueError(f"model '{name}': add '{build.__module__}' as its module in MODEL_MODULES")
        _REGISTRY[name] = ModelInfo(name, build, input_kind, source, description, divisor)
        return build

    return decorate


def model_info(name: str) -> ModelInfo:
    if name not in MODEL_MODULES:
        raise NephrosegInputError(
            "model.name", f"unknown model '{name}' (known: {', '.join(sorted(MODEL_MODULES))})"
        )
    if name not in _REGISTRY:
        importlib.import_module(MODEL_MODULES[name])
    return _REGISTRY[name]


def registered_models() -> list[ModelInfo]:
    return [model_info(name) for name in sorted(MODEL_MODULES)]


def build_model(spec: ModelSpec) -> nn.Module:
    info = model_info(spec.name)
    try:
        return info.build(
            in_channels=spec.in_slices, num_classes=spec.num_classes, width=spec.width, **spec.options
        )
    except TypeError as err:
        raise NephrosegInputError("model.options", f"{spec.name}: {err}") from err


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
