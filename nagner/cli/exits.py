"""`nagner exits`: exit bridges for early exiting with a trained model (LECO's NER application).

    nagner exits --model DIR --train train.conll --output DIR/exits [--epochs 1] [--lr 1e-3]
    nagner predict --model DIR --exits DIR/exits --exit-rule agreement:1 "Ann Lee visited Paris."
    nagner evaluate --model DIR --exits DIR/exits --data test.conll

The model stays as it is; every encoder layer below the last gets a bridge into the heads' space,
trained with the model's own loss (`nagner.exit_training`). Use the data the model was trained on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nagner.common.cli import non_negative_float, positive_float, positive_int
from nagner.common.errors import InputError
from nagner.data.loading import READERS, read_annotations


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `exits`."""
    parser = subparsers.add_parser(
        "exits",
        help="train exit bridges for early exiting (then: predict/evaluate --exits DIR)",
        description="Train one bridge per encoder layer below the last so that the model's heads can answer "
        "from an intermediate layer; the model itself is not changed.",
    )
    parser.add_argument("--model", "-m", metavar="DIR", help="a model folder saved by nagner train (default: the shipped model)")
    parser.add_argument("--train", required=True, metavar="FILE", help="training annotations (CoNLL, W2NER json, jsonl)")
    parser.add_argument("--format", "-f", choices=("auto", *READERS), default="auto", help="format of --train (default auto)")
    parser.add_argument("--tag-columns", type=int, nargs="+", metavar="N", help="CoNLL only: 0-based tag columns")
    parser.add_argument("--output", "-o", required=True, metavar="DIR", help="the bridges' folder (replaced atomically)")
    parser.add_argument("--epochs", type=positive_float, default=1.0, help="passes over --train (default 1)")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate (default 1e-3)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="windows per batch (default 32)")
    parser.add_argument("--distillation", type=non_negative_float, default=0.0,
                        help="weight of the exits' self-distillation from the last layer's detector (default 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nagner.checkpoint import check_checkpoint, default_model_path, load_checkpoint

    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise InputError("exists and is not a folder", output)
    folder = check_checkpoint(args.model if args.model is not None else default_model_path())
    language = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("text_language", "en")
    sentences = read_annotations(args.train, args.format, args.tag_columns, language=language)
    if not sentences:
        raise InputError("no sentences", args.train)
    model = load_checkpoint(args.model, device="cpu")
    from nagner.exit_training import train_exit_bridges

    bridges, losses = train_exit_bridges(
        model, sentences, epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size, seed=args.seed,
        distillation=args.distillation,
    )
    bridges.save_pretrained(output)
    print(f"{len(sentences)} sentences, {bridges.layers - 1} exit bridges, loss {losses[0]:.4f} → {losses[-1]:.4f}; saved to {output}")
    return 0
