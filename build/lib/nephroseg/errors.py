"""The one exception type for problems a user can cause (bad files, bad options, bad recipes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class NephrosegInputError(Exception):
    """A user-fixable problem with an input, named by its file (or option) and the problem.

    The CLI prints ``str(error)`` on one line and exits non-zero; programming errors stay ordinary
    exceptions so that their traceback is kept.
    """

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = " ".join(problem.split())  # one line, even when a library's message has several
        super().__init__(f"{self.source}: {self.problem}")


class NephrosegInputWarning(UserWarning):
    """An input that is used but looks wrong (e.g. MR intensities given to a CT model), named by its
    file; the CLI prints it as one ``warning: FILE: problem`` line on stderr."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


def listed(items: Sequence[str], limit: int = 5, *, last: bool = False) -> str:
    """The first ``limit`` items for a message, '…' for the rest (and the last one when ``last``)."""
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f" … {items[-1]}" if last else " …"
    return shown
