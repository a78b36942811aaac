"""Settings records: a small JSON file beside a folder's results that says what made them, so that a
resumed job refuses to mix its results with those of other settings (the demo, ``predict --resume``)."""

from __future__ import annotations

import json
from pathlib import Path

from nephroseg.errors import NephrosegInputError
from nephroseg.io.atomic import atomic_write_text


def read_settings(path: Path) -> dict:
    """The JSON object recorded at ``path``; a clear error when it cannot be read or is not one."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise NephrosegInputError(path, f"unreadable settings record ({err})") from err
    if not isinstance(found, dict):
        raise NephrosegInputError(path, "settings record is not a JSON object")
    return found


def differing_keys(found: dict, wanted: dict) -> list[str]:
    """The keys of ``wanted`` whose values differ in ``found``, sorted."""
    return sorted(key for key in wanted if found.get(key) != wanted[key])


def changed_settings(path: Path, wanted: dict) -> list[str]:
    """The keys of ``wanted`` whose values differ from the record at ``path``, sorted."""
    return differing_keys(read_settings(path), wanted)


def write_settings(path: Path, settings: dict) -> None:
    atomic_write_text(path, json.dumps(settings, indent=1))
