"""`nagner evaluate`: exact-match scores of a model on an annotated file.

    nagner evaluate --model DIR --data test.conll [--format auto|conll|w2ner|jsonl] [--output metrics.json]

Predicts every sentence from its given words and prints P/R/F1 (micro, per type, per kind:
flat / nested / discontinuous). When gold and predictions are both flat it also prints
seqeval's scores, which agree with ours on flat data. ``--output`` writes the metrics as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nagner.checkpoint import check_checkpoint, default_model_path, load_checkpoint
from nagner.cli.exit_options import add_exit_arguments, with_exits
from nagner.cli.progress import progress_bar
from nagner.common.atomic import atomic_outputs, check_output_path
from nagner.common.cli import positive_int
from nagner.data.example import Entity, Sentence, entity_kind
from nagner.data.loading import READERS, read_annotations
from nagner.evaluation import evaluate_entities, format_report, seqeval_scores
from nagner.prediction import CHUNK_SIZE


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `evaluate`."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model on an annotated file",
        description="Predict the sentences of an annotated file (from their given words) and print "
        "exact-match precision, recall and F1: micro, per type and per kind (flat/nested/discontinuous).",
    )
    parser.add_argument(
        "--model", "-m", metavar="DIR",
        help="a model folder saved by nagner train (default: the shipped CoNLL-2003 English model)",
    )
    parser.add_argument("--data", "-d", required=True, metavar="FILE", help="gold annotations (CoNLL, W2NER, jsonl) or hf:NAME[:CONFIG]:SPLIT")
    parser.add_argument(
        "--format", "-f", choices=("auto", *READERS), default="auto",
        help="format of --data (default auto: .json/.jsonl by their keys, anything else CoNLL)",
    )
    parser.add_argument(
        "--tag-columns", type=int, nargs="+", metavar="N",
        help="CoNLL only: 0-based columns holding tags (column 0 is the word); several = nesting levels "
        "(default: the last column for rows of 4+ columns, else every column after the word)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32, help="sentences per model batch (default 32)")
    parser.add_argument("--output", "-o", metavar="FILE", help="also write the metrics as JSON here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (shown only on a terminal)")
    add_exit_arguments(parser)
    parser.set_defaults(run=run)


def _read_gold(args: argparse.Namespace, model_folder: Path) -> list[Sentence]:
    """Gold sentences; raw text (jsonl) is tokenized with the model's language, as it was trained."""
    config = json.loads((model_folder / "config.json").read_text(encoding="utf-8"))
    return read_annotations(args.data, args.format, args.tag_columns, language=config.get("text_language", "en"))


def _all_flat(entity_lists: list[list[Entity]]) -> bool:
    return all(
        entity_kind(entity, set(entities)) == "flat" for entities in entity_lists for entity in set(entities)
    )


def run(args: argparse.Namespace) -> int:
    """Predict, score and report; returns the exit status."""
    if args.output is not None:
        check_output_path(args.output)
    folder = check_checkpoint(args.model if args.model is not None else default_model_path())
    gold = _read_gold(args, folder)
    model = with_exits(load_checkpoint(args.model), args)
    bar = progress_bar(not args.no_progress, total=len(gold))
    predicted: list[list[Entity]] = []
    try:
        for start in range(0, len(gold), CHUNK_SIZE):  # the progress bar moves once per chunk
            chunk = gold[start : start + CHUNK_SIZE]
            predicted.extend(model.predict_sentences(chunk, batch_size=args.batch_size))
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    gold_entities = [sentence.entities for sentence in gold]
    metrics = evaluate_entities(gold_entities, predicted)

    unknown = sorted({e.type for entities in gold_entities for e in entities} - set(model.config.entity_types))
    if unknown:
        print(
            f"nagner evaluate: note: gold types the model does not know (all count as misses): {', '.join(unknown)}",
            file=sys.stderr,
        )
    print(f"{args.data}: {len(gold)} sentences, {metrics.micro.n_gold} gold and {metrics.micro.n_pred} predicted entities")
    print(format_report(metrics))
    exit_layers = getattr(model, "exit_layers", None)
    early_exit = None
    if exit_layers:
        mean = sum(exit_layers) / len(exit_layers)
        early_exit = {"rule": repr(model.rule), "layers": model.layers, "mean_exit_layer": mean}
        print(f"early exit ({model.rule!r}): mean exit layer {mean:.2f} of {model.layers} "
              f"({model.layers / mean:.2f}× fewer encoder layers)")
    seqeval: dict[str, float] | None = None
    if _all_flat(gold_entities) and _all_flat(predicted):
        seqeval = seqeval_scores(gold, predicted)
        print(
            f"seqeval (IOB2)  P {100 * seqeval['precision']:6.2f}  R {100 * seqeval['recall']:6.2f}  "
            f"F1 {100 * seqeval['f1']:6.2f}"
        )
    else:
        print("seqeval: not computed (it needs flat entities; gold or predictions are nested/discontinuous)")

    if args.output is not None:
        report: dict[str, Any] = {
            "model": str(args.model),
            "data": str(args.data),
            "sentences": len(gold),
            "metrics": metrics.to_dict(),
            "seqeval": seqeval,
            "early_exit": early_exit,
        }
        with atomic_outputs([args.output]) as (out,):
            out.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0
