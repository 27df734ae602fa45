"""What the command-line tools share: argument types, and how a sub-command's failure becomes an
exit code (a user mistake: one clear line and exit 2, no traceback)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nagner.common.errors import InputError


def _number(value: str, convert, accept, expected: str):
    """``convert(value)`` if it parses and ``accept`` holds, else an argparse usage error
    ("expected <expected>, got '<value>'", exit 2)."""
    try:
        number = convert(value)
    except ValueError:
        number = None
    if number is None or not accept(number):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
    return number


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1 (anything else is a usage error, exit 2)."""
    return _number(value, int, lambda n: n >= 1, "a positive integer")


def positive_float(value: str) -> float:
    """argparse type: a number > 0."""
    return _number(value, float, lambda n: n > 0, "a positive number")


def non_negative_float(value: str) -> float:
    """argparse type: a number ≥ 0."""
    return _number(value, float, lambda n: n >= 0, "a number >= 0")


def key_value(value: str) -> tuple[str, Any]:
    """argparse type: "r=16" → ("r", 16); the value is JSON when it parses as JSON, else a string."""
    key, sep, text = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = text
    return key.strip().replace("-", "_"), parsed


def run_command(prog: str, args: argparse.Namespace, user_errors: tuple[type[Exception], ...] = ()) -> int:
    """Run the parsed sub-command ``args.run(args)`` and return its exit code: 2 with one line
    ``<prog> <command>: error: …`` on stderr for an `InputError` or one of ``user_errors``
    (mistakes the user can fix), 130 on Ctrl-C; anything else is a bug and keeps its traceback."""
    try:
        return int(args.run(args) or 0)
    except (InputError, *user_errors) as error:
        print(f"{prog} {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog} {args.command}: interrupted", file=sys.stderr)
        return 130
