"""Argument types shared by the sub-commands."""

from __future__ import annotations

import argparse
import json
from typing import Any


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1 (anything else is a usage error, exit 2)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


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
