"""``predict --resume``: finish an interrupted folder of predictions without redoing the cases
already written, and without mixing in labels made by other models or settings.

Each label file is written atomically, so one that exists is complete. What made each label file is
recorded in ``RECORD_NAME`` beside the labels, right after the file is written (the SHA-256 of every
model file and the settings that change labels); a resume is refused when any label it would keep
was made with other models or settings, or has no record (stopped between the two writes).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nephroseg.errors import NephrosegInputError
from nephroseg.inference.onnx_backend import is_onnx
from nephroseg.io.lock import folder_held
from nephroseg.io.records import differing_keys, read_settings, write_settings
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


def settings_key(record: dict) -> str:
    """A short name for one set of settings, under which the record lists the labels they made."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def read_record(folder: Path) -> dict:
    """The folder's record as ``{"settings": {key: settings}, "labels": {file name: key}}``. A record
    of an earlier version (one set of settings for the whole folder) is read as that set having made
    every file the folder holds, which is what it claimed."""
    path = folder / RECORD_NAME
    found = read_settings(path)
    if "labels" not in found:
        key = settings_key(found)
        names = [entry.name for entry in folder.iterdir() if not entry.name.startswith(".")]
        return {"settings": {key: found}, "labels": dict.fromkeys(names, key)}
    if not isinstance(found.get("settings"), dict) or not isinstance(found["labels"], dict):
        raise NephrosegInputError(path, "settings record has no 'settings' and 'labels' tables")
    return found


def check_resumable(folder: Path, record: dict, existing: list[Path]) -> None:
    """Refuse to resume into ``folder`` unless every label file of ``existing`` (the outputs already
    there) was made with ``record``: a folder may hold the labels of several models, each file's
    own are checked."""
    if not existing:
        return
    if not (folder / RECORD_NAME).is_file():
        raise NephrosegInputError(
            folder,
            f"holds {len(existing)} label file(s) with no record of the models that made them; "
            "pass --overwrite to replace them, or predict into another folder",
        )
    found = read_record(folder)
    for target in existing:
        key = found["labels"].get(target.name)
        made_with = found["settings"].get(key) if key is not None else None
        if not isinstance(made_with, dict):
            raise NephrosegInputError(
                target,
                "has no record of the models that made it; "
                "pass --overwrite to replace it, or predict into another folder",
            )
        differing = differing_keys(made_with, record)
        if differing:
            raise NephrosegInputError(
                target,
                f"was predicted with other {', '.join(differing)}; resuming would mix two predictions: "
                "pass the same models and settings, --overwrite, or another folder",
            )


def record_label(folder: Path, record: dict, target: Path) -> None:
    """Note in the folder's record that ``record`` made ``target``, just written. The other files'
    entries are kept (a folder may hold cases predicted by other models); an unreadable record is
    replaced, which leaves the files it named unrecorded, so that a resume refuses them."""
    with folder_held(folder):  # two predictions writing into one folder: neither loses the other's
        try:
            found = read_record(folder) if (folder / RECORD_NAME).is_file() else {}
        except NephrosegInputError:
            found = {}
        labels = dict(found.get("labels", {}))
        key = settings_key(record)
        labels[target.name] = key
        settings = {k: v for k, v in found.get("settings", {}).items() if k in labels.values()}
        settings[key] = record
        write_settings(folder / RECORD_NAME, {"settings": settings, "labels": labels})
