"""Argument types shared by the sub-commands."""

from __future__ import annotations

import argparse


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1 (anything else is a usage error, exit 2)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number
