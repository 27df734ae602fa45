"""`knowledge-qa compress`: a smaller or lower-bit copy of an agent model (SIMPLE pruning, QuantGPT
quantization, or the PACT / min–max baselines), trained on StrategyQA-format questions.

    knowledge-qa compress --model runs/geek/core --questions strategyqa_train.json \\
        --held-out strategyqa_dev.json --method simple --reduction 0.48 --output runs/geek/core-pruned
    knowledge-qa evaluate --core runs/geek/core-pruned ...
"""

from __future__ import annotations

import argparse

from nagner.common.cli import positive_int


def _share(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {value!r}") from None
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {value!r}")
    return number


def _bits(value: str) -> int:
    if value not in {str(b) for b in range(2, 9)}:
        raise argparse.ArgumentTypeError(f"expected a bit width from 2 to 8, got {value!r}")
    return int(value)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compress",
        help="prune (SIMPLE) or quantize (QuantGPT, PACT, min-max) an agent model",
        description="Compress a core/extractor model (a `knowledge-qa train` adapter folder is merged first) on the "
        "core model's training examples and save a plain transformers folder that --core / --extractor load unchanged. "
        "OUTPUT/compression.json reports parameters or bits and the held-out loss before and after.",
    )
    parser.add_argument("--model", required=True, metavar="MODEL", help="a model folder or name, or an adapter folder from `knowledge-qa train`")
    parser.add_argument("--questions", required=True, help="training questions: StrategyQA JSON or JSONL with decompositions")
    parser.add_argument("--output", "-o", required=True, metavar="FOLDER", help="the compressed model (replaced atomically)")
    parser.add_argument("--method", choices=("simple", "quantgpt", "pact", "minmax"), default="simple",
                        help="simple: structured pruning (BERT-style seq2seq or GPT-2); quantgpt / pact: quantization-aware "
                        "training; minmax: post-training quantization (default simple)")
    parser.add_argument("--reduction", type=_share, default=0.48, metavar="SHARE", help="simple: share of parameters to remove (default 0.48)")
    parser.add_argument("--bits", type=_bits, default=4, help="quantization: weight bits, 2-8 (default 4)")
    parser.add_argument("--granularity", choices=("tensor", "channel"), default="tensor",
                        help="quantization: one clip per weight tensor (QuantGPT's module-wise scaling) or one per output "
                        "channel, far better at 4 bits and below on pretrained models (default tensor)")
    parser.add_argument("--steps", type=positive_int, default=300, help="fine-tuning (simple) or quantization-aware training steps (default 300)")
    parser.add_argument("--mask-steps", type=positive_int, default=300, help="simple: mask-learning steps (default 300)")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--max-examples", type=positive_int, default=2000, help="a seeded sample of the examples (default 2000)")
    parser.add_argument("--held-out", nargs="+", default=[], metavar="FILE",
                        help="evaluation question files: near-duplicate training questions are left out")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as transformers_logging

    from knowledge_qa.training.compression import CompressionRecipe, compress_agent_model

    transformers_logging.disable_progress_bar()  # saving would draw a one-shard progress bar

    recipe = CompressionRecipe(
        model=args.model, questions=args.questions, output=args.output, method=args.method, reduction=args.reduction,
        bits=args.bits, granularity=args.granularity, steps=args.steps, mask_steps=args.mask_steps, learning_rate=args.learning_rate,
        batch_size=args.batch_size, max_examples=args.max_examples, held_out=args.held_out, seed=args.seed,
    )
    compress_agent_model(recipe)
    return 0
