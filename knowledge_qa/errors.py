"""Errors of `knowledge_qa`: bad user input (printed by the CLI without a traceback) and a
model server that cannot be reached or answers nonsense."""

from __future__ import annotations

from nagner.errors import NagNerInputError


class QAInputError(NagNerInputError):
    """Bad user input: a question file, a corpus, an index folder, a flag. ``path`` and ``line``
    (1-based) point at the offending place when known."""


class BackendError(RuntimeError):
    """A model backend failed after its retries (server unreachable, HTTP error, malformed reply).
    The message names the server and what went wrong."""
