"""The `nagner` command: `nagner train | predict | evaluate | exits | compress | leco`.

Each sub-command lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``.
User mistakes (bad files, bad flags) print one clear line and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from nagner.common.cli import run_command

COMMANDS = ("train", "predict", "evaluate", "exits", "compress", "leco")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="nagner", description="NAG-NER: flat, nested and discontinuous named entities in one model."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"nagner.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nagner` console script."""
    return run_command("nagner", build_parser().parse_args(argv))

if __name__ == "__main__":
    sys.exit(main())
