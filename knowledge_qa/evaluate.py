"""The StrategyQA evaluation script: ``python -m knowledge_qa.evaluate`` (= ``knowledge-qa evaluate``).

    python -m knowledge_qa.evaluate --questions dev.json --core MODEL --index INDEX --traces traces.jsonl

See ``--help`` and `knowledge_qa.evaluation` for what is measured and how resumption works.
"""

from __future__ import annotations

import sys

from knowledge_qa.cli import main


def run(argv: list[str] | None = None) -> int:
    """Run ``knowledge-qa evaluate`` with ``argv``."""
    return main(["evaluate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(run())
