"""Errors a user can act on: which file, which line, what was expected."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input (a data file, a text, a flag). The command-line tools print it without a
    traceback and exit 2. Both tasks raise it under their own names (``nagner.NagNerInputError``,
    ``knowledge_qa.errors.QAInputError``): one class, so one ``except`` catches every input error.

    ``path`` and ``line`` (1-based) point at the offending place when known.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        return f"{where}{self.message}"
