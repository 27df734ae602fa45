"""`knowledge-qa prompts`: show or save a prompt set (fine-tuned, few-shot or a JSON file), the
starting point for a set of one's own (`--prompts FILE`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prompts",
        help="show or save a prompt set as JSON (to edit and pass back with --prompts FILE)",
        description="Print a prompt set (instruction, cue, few-shot examples and stop sequences of every action) "
        "as the JSON that --prompts FILE reads, or write it to a file.",
    )
    parser.add_argument("--prompts", default="few-shot", metavar="SET", help="fine-tuned, few-shot (default) or a JSON file")
    parser.add_argument("--write", metavar="FILE.json", help="write the set here instead of printing it")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from knowledge_qa.assembly import prompt_set
    from knowledge_qa.prompts import prompt_set_to_json
    from nagner.common.atomic import atomic_outputs, check_output_path

    text = prompt_set_to_json(prompt_set(args.prompts))
    if args.write:
        check_output_path(args.write)
        with atomic_outputs([args.write]) as (handle,):
            handle.write(text + "\n")
    else:
        print(text)
    return 0
