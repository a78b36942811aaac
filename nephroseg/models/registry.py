"""Models are registered by name and built from a recipe's ``model`` section.

Adding a model = one module with a ``@register_model`` builder + one recipe; nothing else changes
but the import line in ``models/__init__.py``.
"""

from __future__ import annotations

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


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, input_kind: InputKind, source: str, description: str, divisor: int):
    """Decorator for a builder ``f(in_channels, num_classes, width, **options) -> nn.Module``."""

    def decorate(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' registered twice")
        _REGISTRY[name] = ModelInfo(name, build, input_kind, source, description, divisor)
        return build

    return decorate


def model_info(name: str) -> ModelInfo:
    if name not in _REGISTRY:
        raise NephrosegInputError(
            "model.name", f"unknown model '{name}' (known: {', '.join(sorted(_REGISTRY))})"
        )
    return _REGISTRY[name]


def registered_models() -> list[ModelInfo]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


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
