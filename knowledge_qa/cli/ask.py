"""`knowledge-qa ask "question"`: answer one question and print a readable trace."""

from __future__ import annotations

import argparse
import json

from knowledge_qa.assembly import build_agent
from knowledge_qa.cli.arguments import add_agent_arguments, agent_spec


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ask",
        help="answer a yes/no question and show how",
        description="Answer an implicit yes/no question with the GEEK loop and print the trace.",
    )
    parser.add_argument("question", help="the question, e.g. \"Did Aristotle use a laptop?\"")
    parser.add_argument("--json", action="store_true", help="print the full trace as JSON instead")
    add_agent_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from knowledge_qa.errors import QAInputError
    from knowledge_qa.trace import format_trace

    if not args.question.strip():
        raise QAInputError("the question is empty")
    result = build_agent(agent_spec(args)).answer(args.question)
    print(json.dumps(result.to_dict(), indent=1, ensure_ascii=False) if args.json else format_trace(result))
    return 0
