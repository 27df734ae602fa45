"""Errors of `knowledge_qa`: bad user input (printed by the CLI without a traceback) and a
model server that cannot be reached or answers nonsense."""

from __future__ import annotations

from nagner.common.errors import InputError as QAInputError

__all__ = ["BackendError", "QAInputError"]


class BackendError(RuntimeError):
    """A model backend failed after its retries (server unreachable, HTTP error, malformed reply).
    The message names the server and what went wrong."""
