"""One job per output folder: an advisory lock held for the life of a job, so that a second job
started on the same folder (a batch scheduler requeueing a job whose first run is still alive, a
second terminal) stops at once instead of interleaving its checkpoints and logs with the first's.
The lock goes with the process: a crashed or killed job leaves nothing to clean up."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from nephroseg.errors import NephrosegInputError
from nephroseg.io.atomic import raise_write_fault, refuse_file_where_a_folder_goes

try:
    import fcntl
except ImportError:  # Windows: no advisory locks of this kind; jobs are not guarded there
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def exclusive_folder(folder: str | Path, job: str) -> Iterator[bool]:
    """Hold ``folder`` (made when missing) for one ``job`` ("training", …); yields whether the folder
    is new. A folder this call made and the job left empty is removed when the job fails."""
    folder = Path(folder)
    refuse_file_where_a_folder_goes(folder, f"the {job} needs a folder there")
    fresh = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise_write_fault(folder, err)
        raise
    busy = f"another nephroseg {job} is running in this folder: wait for it to end, or choose another folder"
    try:
        with _held(folder, busy=busy):
            yield fresh
    except BaseException:
        if fresh and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


@contextlib.contextmanager
def folder_held(folder: str | Path) -> Iterator[None]:
    """Wait until no other process holds ``folder``, and hold it for a short read-modify-write of a
    file several jobs share (a dataset's ``kits.json`` written by two generators at once)."""
    with _held(Path(folder)):
        yield


@contextlib.contextmanager
def _held(folder: Path, busy: str | None = None) -> Iterator[None]:
    """An exclusive ``flock`` on the folder for the block: waited for, or, with ``busy``, refused at
    once with that message when another process holds it. Where the file system has no such locks
    (Lustre mounted without ``flock``, some NFS set-ups: ENOSYS, ENOLCK, EOPNOTSUPP) or the platform
    none (Windows), the block runs unguarded rather than the job refused."""
    if fcntl is None:
        yield
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if busy is None else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NephrosegInputError(folder, str(busy)) from None
        except OSError as err:
            if err.errno not in _NO_LOCKS_HERE:
                raise
        yield
    finally:
        os.close(handle)


_NO_LOCKS_HERE = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL}
