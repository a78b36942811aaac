"""Atomic writes: a file appears complete under its final name, or not at all."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from nephroseg.errors import NephrosegInputError

# Faults of the place written to (full disk, no permission, read-only mount) that a user can fix:
# reported as one line naming the file; any other OSError stays an ordinary exception.
_WRITE_FAULTS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large for the file system",
    errno.EIO: "input/output error",
}


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# mkstemp creates files readable by their owner only; results get the permissions of a normal file.
_FILE_MODE = 0o666 & ~_umask()


def _suffixes(path: Path) -> str:
    """'.nii.gz' for 'x.nii.gz': writers such as nibabel pick the format from the full suffix."""
    return "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it into place only if the block succeeds.

    The temporary file lives in the same folder (same file system), so ``os.replace`` is atomic. On
    any exception, including KeyboardInterrupt, the temporary file is removed and ``final`` is left
    as it was; a full disk or a folder without write permission becomes a ``NephrosegInputError``.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(
            prefix=f".{final.name}.", suffix=".tmp" + _suffixes(final), dir=final.parent
        )
    except OSError as err:
        raise_write_fault(final, err)
        raise
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, final)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise_write_fault(final, err)
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def raise_write_fault(final: Path, err: OSError) -> None:
    """Re-raise a write fault as a user error; other OSErrors return to be re-raised as they are."""
    if err.errno in _WRITE_FAULTS:
        raise NephrosegInputError(
            final, f"cannot write: {_WRITE_FAULTS[err.errno]} (nothing was written)"
        ) from err


def atomic_write_text(final: str | Path, text: str) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(final: str | Path, payload: object) -> None:
    """JSON with an undefined score (NaN, e.g. a slice IoU of a case without labelled slices) as null:
    a bare NaN is not JSON, and strict parsers (JavaScript's, jq's --seq aside) refuse the whole file."""
    atomic_write_text(final, json.dumps(_finite_or_null(payload), indent=1, allow_nan=False) + "\n")


def _finite_or_null(value: object) -> object:
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_csv(final: str | Path, rows: Iterable[Sequence[object]]) -> None:
    """Rows (the first one the header) as CSV, atomically."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    atomic_write_text(final, buffer.getvalue())


def link_or_copy(source: Path, target: Path) -> None:
    """Hard link when possible (no copy of big volumes), else an atomic byte copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def atomic_write_bytes(final: str | Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def same_place(first: str | Path, second: str | Path) -> bool:
    """Whether two paths name one file or folder (through links, ``..`` or another spelling)."""
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet)
        return Path(first).resolve() == Path(second).resolve()


def lies_inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` (existing or not yet) lies below ``folder``, through links and ``..``."""
    return Path(folder).resolve() in Path(path).resolve().parents


def refuse_file_where_a_folder_goes(folder: str | Path, why: str) -> None:
    """Refuse, before any work, an output folder whose path is an existing file (``why``: what the
    folder is for); making it would fail late with a traceback."""
    if Path(folder).exists() and not Path(folder).is_dir():
        raise NephrosegInputError(folder, f"exists and is not a folder: {why}")


def refuse_writing_into_source(source: str | Path, target: str | Path, what: str) -> None:
    """Stop a command whose output would land on its own input (``what`` says what would be lost)."""
    if same_place(source, target):
        raise NephrosegInputError(target, f"is the input itself ({source}): {what}; choose another output")


def refuse_replacing_foreign_files(beginnings: dict[Path, str], what: str) -> None:
    """Before any work, refuse to replace a file that exists and does not begin as the one this
    command writes there (``beginnings``: path → the text ours begins with): a ``report.md`` or
    ``metrics.csv`` of the user's own in the chosen folder. Ours, from an earlier run, are replaced."""
    for path, beginning in beginnings.items():
        if path.exists() and not path.is_file():
            raise NephrosegInputError(path, f"exists and is not a file; {what} writes a file there")
        if path.is_file():
            with path.open("rb") as stream:
                found = stream.read(len(beginning.encode()))
            if found != beginning.encode():
                raise NephrosegInputError(
                    path, f"exists and was not written by {what}; not overwritten: choose another --out"
                )


@contextlib.contextmanager
def staged_folder(folder: str | Path) -> Iterator[Path]:
    """Yield an empty hidden folder inside ``folder`` to write a set of files into; when the block
    succeeds, move each into the same place in ``folder`` (deepest first, so a ``report.md`` lands after
    the figures it links), replacing files of the same name and keeping the others. On any failure the
    staged files go and ``folder`` is as it was (removed when this made it and it is empty)."""
    folder = Path(folder)
    fresh = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".nephroseg-", suffix=".partial", dir=folder))
    except OSError as err:
        raise_write_fault(folder, err)
        raise
    try:
        yield stage
        staged = [p for p in stage.rglob("*") if p.is_file()]
        for path in sorted(staged, key=lambda p: (-len(p.relative_to(stage).parts), str(p))):
            target = folder / path.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    except OSError as err:
        _discard(stage, folder, fresh)
        raise_write_fault(folder, err)
        raise
    except BaseException:
        _discard(stage, folder, fresh)
        raise
    shutil.rmtree(stage, ignore_errors=True)


def _discard(stage: Path, folder: Path, fresh: bool) -> None:
    shutil.rmtree(stage, ignore_errors=True)
    if fresh and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
