"""``predict --resume``: finish an interrupted folder of predictions without redoing the cases
already written, and without mixing in labels made by other models or settings.

Each label file is written atomically, so one that exists is complete. What made the folder is
recorded in ``RECORD_NAME`` beside the labels (the SHA-256 of every model file and the settings
that change labels); a resume whose models or settings differ is refused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from nephroseg.errors import NephrosegInputError
from nephroseg.inference.onnx_backend import is_onnx
from nephroseg.io.records import changed_settings, write_settings
from nephroseg.training.checkpoint import resolve_checkpoints

RECORD_NAME = ".nephroseg-predict.json"  # hidden: folder listings and `evaluate` skip dot files


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_digests(models: list[str | Path]) -> list[str]:
    """The SHA-256 of each model file the arguments name, in order (a run folder: its best checkpoint;
    a cross-validation folder: each fold's)."""
    digests = []
    for model in models:
        files = [Path(model)] if is_onnx(model) else resolve_checkpoints(model)
        digests.extend(file_sha256(path) for path in files)
    return digests


def prediction_record(
    models: list[str | Path],
    coarse_models: list[str | Path] | None,
    tta: bool | None,
    precision: str,
    output_format: str,
) -> dict:
    """What decides the labels of a prediction folder."""
    return {
        "models": model_digests(models),
        "coarse_models": model_digests(coarse_models or []),
        "tta": tta,
        "precision": precision,
        "format": output_format,
    }


def check_resumable(folder: Path, record: dict, existing: int) -> None:
    """Refuse to resume into ``folder`` (holding ``existing`` labels) unless it was made with ``record``."""
    if not existing:
        return
    path = folder / RECORD_NAME
    if not path.is_file():
        raise NephrosegInputError(
            folder,
            f"holds {existing} label file(s) with no record of the models that made them; "
            "pass --overwrite to replace them, or predict into another folder",
        )
    differing = changed_settings(path, record)
    if differing:
        raise NephrosegInputError(
            folder,
            f"was predicted with other {', '.join(differing)}; resuming would mix two predictions: "
            "pass the same models and settings, --overwrite, or another folder",
        )


def write_record(folder: Path, record: dict) -> None:
    write_settings(folder / RECORD_NAME, record)
