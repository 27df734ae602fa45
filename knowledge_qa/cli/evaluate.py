"""`knowledge-qa evaluate` (= `python -m knowledge_qa.evaluate`): the StrategyQA evaluation script."""

from __future__ import annotations

import argparse
import json
import sys

from knowledge_qa.assembly import build_agent
from knowledge_qa.cli.arguments import add_agent_arguments, agent_spec
from nagner.common.cli import positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="StrategyQA evaluation: accuracy, actions, steps, retrieval calls, latency; one trace per question",
        description="Run the agent on StrategyQA-format questions (dev.json) and report accuracy, per-action "
        "counts, steps and retrieval calls per question and seconds per question. Writes one JSONL trace per "
        "question; re-running with the same --traces file skips the questions already answered.",
    )
    parser.add_argument("--questions", required=True, help="StrategyQA JSON (a list of records) or JSONL")
    parser.add_argument("--traces", required=True, metavar="FILE.jsonl", help="trace file (appended to; resumable)")
    parser.add_argument("--summary", metavar="FILE.json", help="also write the summary here")
    parser.add_argument("--limit", type=positive_int, help="only the first N questions")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="questions answered together (default 8)")
    add_agent_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from knowledge_qa.evaluation import evaluate
    from knowledge_qa.strategyqa import read_questions
    from nagner.common.atomic import atomic_outputs, check_output_path

    questions = read_questions(args.questions)[: args.limit]
    if args.summary:
        check_output_path(args.summary)
    spec = agent_spec(args)
    agent = build_agent(spec)
    settings = {
        "questions": str(args.questions),
        "core": args.core or f"{args.server} {args.server_model}",
        "extractor": "sentence" if args.sentence_extractor else (args.extractor or args.server_extractor_model),
        "adapter": args.adapter,
        "answerer": args.answerer,
        "index": None if args.no_retrieval else args.index,
        "answerer_server_model": args.server_answerer_model,
        "endpoint": args.endpoint if args.server else None,
        "score_mode": args.score_mode if args.server else None,
        "prompts": args.prompts,
        "temperature": args.temperature,
        "exploration_temperature": args.exploration_temperature,
        "sampling": dict(args.sampling),
        **vars(spec.options),
    }

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} questions", end="", file=sys.stderr, flush=True)

    summary = evaluate(agent, questions, args.traces, settings=settings, batch_size=args.batch_size, progress=progress)
    print(file=sys.stderr)
    summary["settings"] = settings
    text = json.dumps(summary, indent=1)
    print(text)
    if args.summary:
        with atomic_outputs([args.summary]) as (handle,):
            handle.write(text + "\n")
    return 0
