"""Checkpoints: written atomically, read weights-only (a file carrying pickled code is refused)."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from nephroseg.errors import NephrosegInputError, listed
from nephroseg.io import atomic_path

CHECKPOINT_FORMAT = "nephroseg.checkpoint.v1"
BEST_NAME = "best.pt"
LAST_NAME = "last.pt"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Serialized in memory first: torch.save on a full disk fails with an opaque RuntimeError, a
    plain write with OSError(ENOSPC), which ``atomic_path`` reports as one line naming the file."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``: tensors, numbers, strings and containers only."""
    path = Path(path)
    if not path.is_file():
        raise NephrosegInputError(path, "checkpoint not found")
    if path.stat().st_size == 0:
        raise NephrosegInputError(path, "not a readable checkpoint: the file is empty (0 bytes)")
    if not zipfile.is_zipfile(path):  # an image, a text file, a checkpoint cut short
        raise NephrosegInputError(
            path,
            "not a readable checkpoint: not the zip archive torch.save writes (cut short, or another kind of "
            "file; a model is a run folder, a .pt checkpoint or an .onnx file)",
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise NephrosegInputError(
            path, f"refused: the checkpoint holds pickled objects beyond weights ({str(err).splitlines()[0]})"
        ) from err
    # torch's weights-only unpickler fails with IndexError ('pop from empty list') on a text file
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError) as err:
        raise NephrosegInputError(path, f"not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise NephrosegInputError(path, f"not a nephroseg checkpoint (expected format {CHECKPOINT_FORMAT})")
    return payload


def resolve_checkpoint(model: str | Path) -> Path:
    """A run folder means its best checkpoint (else its last); a file is taken as is."""
    model = Path(model)
    if model.is_dir():
        for name in (BEST_NAME, LAST_NAME):
            candidate = model / "checkpoints" / name
            if candidate.is_file():
                return candidate
        raise NephrosegInputError(model, "run folder holds no checkpoint (checkpoints/best.pt or last.pt)")
    if not model.exists():
        raise NephrosegInputError(model, "model not found (give a run folder or a checkpoint file)")
    return model


def resolve_checkpoints(model: str | Path) -> list[Path]:
    """Like ``resolve_checkpoint``, but a cross-validation folder (``fold_*`` run folders inside)
    gives one checkpoint per fold."""
    model = Path(model)
    folds = sorted(p for p in model.glob("fold_*") if p.is_dir()) if model.is_dir() else []
    if folds and not (model / "checkpoints").is_dir():
        return [resolve_checkpoint(fold) for fold in folds]
    return [resolve_checkpoint(model)]


def refuse_other_kind_of_run(folder: str | Path, job: str) -> None:
    """One folder, one kind of result: ``predict -m FOLDER`` takes a cross-validation's folds or a
    training run's checkpoints, so a ``job`` ("training", "cross-validation") is refused in a folder
    holding the other kind (``predict`` would then take one of the two without a word)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    folds = sorted(p.name for p in folder.glob("fold_*") if p.is_dir())
    if job == "training" and folds:
        raise NephrosegInputError(
            folder, f"holds a cross-validation ({listed(folds, 2)}): a training run needs a folder of its own"
        )
    if job == "cross-validation" and (folder / "checkpoints").is_dir():
        raise NephrosegInputError(
            folder, "holds a training run (checkpoints/): a cross-validation needs a folder of its own"
        )
