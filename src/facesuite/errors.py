"""User-facing errors.

Anything the user can fix (a wrong path, a corrupt image, a folder in the wrong layout) is raised
as :class:`InputError`. The CLI prints its one-line message and exits with code 2; library callers
can catch it. Programming errors stay ordinary exceptions so their tracebacks remain visible.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A problem with user input, described in one line that names the offending path."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)
