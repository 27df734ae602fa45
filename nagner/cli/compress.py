"""`nagner compress`: a smaller encoder by WID (weight-inherited distillation), from a pretrained
encoder and plain text.

    nagner compress --encoder sentence-transformers/all-MiniLM-L6-v2 --text passages.txt \\
        --output students/minilm-192 --target-hidden 192 --target-intermediate 768 --steps 2000

The student is a plain BERT folder (``AutoModel.from_pretrained``, or ``nagner train --encoder``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nagner.common.cli import positive_int
from nagner.common.errors import InputError
from nagner.common.textfile import check_file, numbered_lines


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `compress`."""
    parser = subparsers.add_parser(
        "compress",
        help="compress an encoder with WID",
        description="Fit an MLM head on the frozen encoder, run WID (compactors, progressive masks, weight "
        "squeezing) with the MLM loss on --text, and save the dense student with the encoder's tokenizer.",
    )
    parser.add_argument("--encoder", required=True, help="teacher: a BERT-family encoder name or folder")
    parser.add_argument("--text", required=True, metavar="FILE", help="UTF-8 text, one passage a line (blank lines skipped)")
    parser.add_argument("--output", "-o", required=True, metavar="DIR", help="the student folder (replaced atomically)")
    parser.add_argument("--target-hidden", type=positive_int, required=True, help="the student's hidden size")
    parser.add_argument("--target-intermediate", type=positive_int, required=True, help="the student's FFN width")
    parser.add_argument("--strategy", choices=("dim", "head"), default="dim", help="narrower heads (dim) or fewer heads (head)")
    parser.add_argument("--steps", type=positive_int, default=2000, help="WID training steps (default 2000)")
    parser.add_argument("--w-step", type=positive_int, default=100, help="steps between mask updates (default 100)")
    parser.add_argument("--head-steps", type=positive_int, default=200, help="MLM-head fitting steps (default 200)")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--max-length", type=positive_int, default=128, help="sub-tokens per passage (default 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = check_file(args.text)
    texts = [line.strip() for _, line in numbered_lines(path) if line.strip()]
    if not texts:
        raise InputError("no text lines (empty file?)", path)
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise InputError("exists and is not a folder", output)
    from nagner.compression.wid import WidConfig
    from nagner.compression.wid.recipe import WidTraining, compress_with_wid

    try:
        config = WidConfig(args.target_hidden, args.target_intermediate, args.strategy, args.w_step)
    except ValueError as error:
        raise InputError(str(error)) from None
    training = WidTraining(
        steps=args.steps, batch_size=args.batch_size, max_length=args.max_length, head_steps=args.head_steps, seed=args.seed
    )
    try:
        report = compress_with_wid(args.encoder, texts, config, training, output)
    except ValueError as error:  # targets the encoder cannot take
        raise InputError(str(error)) from None
    print(json.dumps(report["student"]), flush=True)
    print(f"student → {output}")
    return 0
