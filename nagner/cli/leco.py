"""`nagner leco`: LECO early exiting for sentence classification (`nagner.compression.leco.training`).

    nagner leco train --train train.jsonl --held-out held.jsonl --output DIR [--exits search]
    nagner leco evaluate --model DIR --data test.jsonl --rule cobee:3 --rule pabee:2 --rule entropy:0.3
    nagner leco predict --model DIR --data texts.jsonl --rule cobee:3 [--output predictions.jsonl]

Data: JSON lines of {"text": ..., "label": ...} (optionally "text_pair"); `predict` needs no label.
`evaluate` reads every exit once and reports each exit's accuracy and, per rule, the accuracy and the
speed-up in layers on the same weights; `predict` runs real early exiting, one input at a time,
and writes the label and the layer each input left at.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nagner.common.cli import positive_float, positive_int
from nagner.common.errors import InputError

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `leco` and its three actions."""
    parser = subparsers.add_parser(
        "leco",
        help="early-exit sentence classifiers: train (with exit search), evaluate exit rules, predict",
        description="LECO: an exit after every encoder layer (types searched by first-order DARTS), and "
        "exit rules (COBEE, PABEE, entropy, max-probability) that stop the encoder early.",
    )
    actions = parser.add_subparsers(dest="action", required=True)

    train = actions.add_parser("train", help="train a multi-exit classifier")
    train.add_argument("--train", required=True, metavar="FILE", help="labelled texts (JSON lines)")
    train.add_argument("--held-out", metavar="FILE", help="labelled texts for the exit search's architecture steps")
    train.add_argument("--output", "-o", required=True, metavar="DIR", help="the model folder (replaced atomically)")
    train.add_argument("--encoder", default=DEFAULT_ENCODER, help=f"pretrained encoder, BERT family (default {DEFAULT_ENCODER})")
    train.add_argument("--exits", default="search",
                       help="'search' (default; needs --held-out) or one exit type at every layer "
                       "(cls_linear, mean_linear, max_linear, attention_pool, conv_max, mlp_mean)")
    train.add_argument("--search-steps", type=positive_int, default=100, help="alternate DARTS steps (default 100)")
    train.add_argument("--epochs", type=positive_int, default=1, help="training passes after the search (default 1)")
    train.add_argument("--lr", type=positive_float, default=1e-4, help="learning rate (default 1e-4)")
    train.add_argument("--batch-size", type=positive_int, default=16, help="texts per batch (default 16)")
    train.add_argument("--max-length", type=positive_int, default=128, help="sub-tokens per text (default 128)")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=run_train)

    evaluate = actions.add_parser("evaluate", help="per-exit accuracy, and each exit rule's accuracy and speed-up")
    evaluate.add_argument("--model", "-m", required=True, metavar="DIR", help="a folder saved by nagner leco train")
    evaluate.add_argument("--data", required=True, metavar="FILE", help="labelled texts (JSON lines)")
    evaluate.add_argument("--rule", action="append", default=[], metavar="RULE",
                          help="cobee:VOTES, pabee:PATIENCE, entropy:THRESHOLD or max-probability:THRESHOLD (repeatable)")
    evaluate.add_argument("--batch-size", type=positive_int, default=32)
    evaluate.add_argument("--max-length", type=positive_int, default=128)
    evaluate.set_defaults(run=run_evaluate)

    predict = actions.add_parser("predict", help="early-exit prediction, one text at a time")
    predict.add_argument("--model", "-m", required=True, metavar="DIR", help="a folder saved by nagner leco train")
    predict.add_argument("--data", required=True, metavar="FILE", help="texts (JSON lines; a label, if any, is ignored)")
    predict.add_argument("--rule", required=True, metavar="RULE", help="the exit rule, as for evaluate")
    predict.add_argument("--output", "-o", metavar="FILE", help="JSON lines out (default: standard output)")
    predict.add_argument("--max-length", type=positive_int, default=128)
    predict.set_defaults(run=run_predict)


def _rule(text: str):
    from nagner.compression.leco.training import parse_exit_rule

    try:
        return parse_exit_rule(text)
    except ValueError as error:
        raise InputError(str(error)) from None


def _load(folder: str):
    """The model, its tokenizer and its class names."""
    from transformers import AutoTokenizer

    from nagner.compression.leco import MultiExitClassifier

    model = MultiExitClassifier.from_pretrained(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError):
        raise InputError("the model folder has no tokenizer (was it saved by nagner leco train?)", folder) from None
    labels = model.labels or [str(i) for i in range(model.classes)]
    return model, tokenizer, labels


def run_train(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from nagner.common.encoders import resolve_encoder
    from nagner.compression.leco import EXIT_TYPES
    from nagner.compression.leco.training import encode_texts, make_batches, read_labelled_texts, train_leco

    if args.exits != "search" and args.exits not in EXIT_TYPES:
        raise InputError(f"--exits: expected 'search' or one of {', '.join(EXIT_TYPES)}, got {args.exits!r}")
    if args.exits == "search" and not args.held_out:
        raise InputError("--exits search needs --held-out (labelled texts the architecture weights learn on)")
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise InputError("exists and is not a folder", output)
    train_records = read_labelled_texts(args.train)
    held_out_records = read_labelled_texts(args.held_out) if args.held_out else []
    labels = sorted({r.label for r in train_records})
    if len(labels) < 2:
        raise InputError(f"the training file has one label only ({labels[0]!r}); a classifier needs two or more", args.train)
    encoder = resolve_encoder(args.encoder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(encoder)
    except OSError as error:
        raise InputError(f"cannot load the encoder {args.encoder!r}: {error}") from None
    train = make_batches(encode_texts(train_records, tokenizer, labels, args.max_length), args.batch_size, args.seed)
    held_out = make_batches(encode_texts(held_out_records, tokenizer, labels, args.max_length), args.batch_size, args.seed + 1) \
        if held_out_records else []
    run = train_leco(encoder, train, len(labels), held_out=held_out, exits=args.exits, search_steps=args.search_steps,
                     epochs=args.epochs, learning_rate=args.lr, seed=args.seed)
    run.model.labels = labels
    run.model.save_pretrained(output, tokenizer)
    print(f"{len(train_records)} texts, labels {', '.join(labels)}; exits {', '.join(run.model.chosen_exits())}; "
          f"loss {run.train_losses[0]:.4f} → {run.train_losses[-1]:.4f}; saved to {output}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from nagner.compression.leco.training import (
        encode_texts,
        exit_probabilities,
        make_batches,
        read_labelled_texts,
        rule_report,
    )

    rules = [(text, _rule(text)) for text in args.rule]
    model, tokenizer, labels = _load(args.model)
    records = read_labelled_texts(args.data)
    batches = make_batches(encode_texts(records, tokenizer, labels, args.max_length), args.batch_size)
    probabilities = exit_probabilities(model, batches)  # (N, L, C)
    gold = torch.cat([b["labels"] for b in batches])
    per_exit = (probabilities.argmax(-1) == gold[:, None]).float().mean(0)  # (L,)
    print(f"{len(records)} texts, {model.layers} exits ({', '.join(model.chosen_exits())})")
    print("| exit layer | " + " | ".join(str(i + 1) for i in range(model.layers)) + " |")
    print("|---|" + "---|" * model.layers)
    print("| accuracy | " + " | ".join(f"{100 * a:.2f}" for a in per_exit.tolist()) + " |")
    if rules:
        print("\n| rule | accuracy | mean exit layer | speed-up in layers |\n|---|---|---|---|")
        for text, rule in rules:
            report = rule_report(probabilities, gold, rule)
            print(f"| {text} | {100 * report['accuracy']:.2f} | {report['mean_exit_layer']:.2f} | {report['layer_speed_up']:.2f}× |")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    import torch

    from nagner.common.jsonl import write_jsonl
    from nagner.compression.leco.training import encode_texts, read_labelled_texts

    rule = _rule(args.rule)
    model, tokenizer, labels = _load(args.model)
    records = read_labelled_texts(args.data, labelled=False)
    rows = encode_texts(records, tokenizer, None, args.max_length)
    out = []
    for record, row in zip(records, rows, strict=True):
        ids = torch.tensor([row["input_ids"]])
        label, layer = model.predict_early(ids, torch.ones_like(ids), rule)
        out.append({"text": record.text, "label": labels[label], "exit_layer": layer})
    if args.output:
        write_jsonl(out, args.output)
    else:
        for item in out:
            print(json.dumps(item, ensure_ascii=False))
    return 0
