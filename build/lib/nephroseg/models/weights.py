"""Local weights for a freshly built model (``nephroseg train --weights FILE``).

Nothing can be downloaded here, so encoders start from random weights; a user who has, say,
torchvision's ResNet18 or VGG16 weights on disk loads them with this. Files are read weights-only:
a file carrying pickled code is refused.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nephroseg.errors import NephrosegInputError

KNOWN_PREFIXES = ("", "module.", "model.", "network.", "encoder.", "backbone.", "features.")


@dataclass(frozen=True)
class LoadedWeights:
    target: str  # "model" or the sub-module name the weights went into
    loaded: int  # tensors copied
    skipped: int  # tensors of the file with no matching name and shape


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict, or the ``model_state`` of a nephroseg checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise NephrosegInputError(path, "weights file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise NephrosegInputError(path, "refused: the file holds pickled objects beyond weights") from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise NephrosegInputError(path, f"not a readable weights file ({type(err).__name__})") from err
    if isinstance(payload, dict) and "model_state" in payload:
        payload = payload["model_state"]
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise NephrosegInputError(path, "not a state dict (expected a mapping of names to tensors)")
    return payload


def _matching(state: dict[str, torch.Tensor], module: nn.Module) -> tuple[dict[str, torch.Tensor], int]:
    """The best prefix-stripped view of ``state`` onto ``module``'s names and shapes."""
    own = module.state_dict()
    best: dict[str, torch.Tensor] = {}
    for prefix in KNOWN_PREFIXES:
        view = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        matched = {k: v for k, v in view.items() if k in own and own[k].shape == v.shape}
        if len(matched) > len(best):
            best = matched
    return best, len(state) - len(best)


def load_local_weights(model: nn.Module, path: str | Path) -> LoadedWeights:
    """Copy every tensor whose name and shape match into the whole model, or into its ``encoder``
    (or ``backbone``) when the file holds backbone weights; refuse a file that matches nothing."""
    state = read_state_dict(path)
    candidates = [("model", model)] + [
        (name, getattr(model, name))
        for name in ("encoder", "backbone")
        if isinstance(getattr(model, name, None), nn.Module)
    ]
    scored = [(name, module, *_matching(state, module)) for name, module in candidates]
    name, module, matched, skipped = max(scored, key=lambda item: len(item[2]))
    if not matched:
        raise NephrosegInputError(path, "no tensor matches this model by name and shape")
    module.load_state_dict(matched, strict=False)
    return LoadedWeights(name, len(matched), skipped)
