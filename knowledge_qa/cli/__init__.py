"""The `knowledge-qa` command: `knowledge-qa index | train | ask | evaluate | prompts | compress`.

Each sub-command lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``.
User mistakes (bad files, bad flags, an unreachable server) print one clear line and exit 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from knowledge_qa.errors import BackendError
from nagner.common.cli import run_command

COMMANDS = ("index", "train", "ask", "evaluate", "prompts", "compress")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="knowledge-qa",
        description="GEEK: answer implicit yes/no questions by decomposing, retrieving and extracting knowledge.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"knowledge_qa.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `knowledge-qa` console script."""
    return run_command("knowledge-qa", build_parser().parse_args(argv), (BackendError,))

if __name__ == "__main__":
    sys.exit(main())
