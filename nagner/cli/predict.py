"""`nagner predict`: entities in texts given as arguments, on stdin or in a file, one per line.

    nagner predict "Ann Lee visited Paris. She met Bo there."   # texts as arguments
    cat texts.txt | nagner predict --model DIR -                 # stdin, one text a line
    nagner predict --input texts.txt --output out.jsonl [--format jsonl|conll|brat|html]
    nagner predict --input report.txt --document --format html --output report.html

Every text (argument, input line, or with --document the whole file) is split into sentences and
gives one output record with offsets into it, in order. Input streams in chunks (memory stays
flat on big files) and output files appear only when complete.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator

from nagner.cli.allocator import fix_mmap_threshold
from nagner.cli.exit_options import add_exit_arguments, with_exits
from nagner.cli.progress import progress_bar
from nagner.common.atomic import check_output_path
from nagner.common.cli import positive_int
from nagner.common.textfile import iter_file_lines
from nagner.errors import NagNerInputError
from nagner.prediction import (
    OUTPUT_FORMATS,
    iter_stdin_lines,
    output_paths,
    predict_stream,
    read_document,
    write_predictions,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `predict`."""
    parser = subparsers.add_parser(
        "predict",
        help="find entities in raw texts (one per line, or a whole document)",
        description="Find flat, nested and discontinuous entities in texts, one text (or with --words "
        "one pre-tokenized sentence) per line, or with --document one whole file. Texts are split into "
        "sentences; every text gives one output record with character offsets into it.",
    )
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to tag; '-' alone reads stdin")
    parser.add_argument("--input", "-i", metavar="FILE", help="a UTF-8 file with one text per line ('-': stdin)")
    parser.add_argument(
        "--model", "-m", metavar="DIR",
        help="a model folder saved by nagner train (default: the shipped CoNLL-2003 English model)",
    )
    parser.add_argument(
        "--output", "-o", metavar="FILE",
        help="where to write (default stdout); brat writes FILE.txt and FILE.ann (FILE may end in .txt or .ann)",
    )
    parser.add_argument("--format", "-f", choices=OUTPUT_FORMATS, default="jsonl", help="output format (default jsonl)")
    parser.add_argument(
        "--words", action="store_true",
        help="each line is a pre-tokenized sentence: words separated by whitespace",
    )
    parser.add_argument(
        "--document", action="store_true",
        help="the --input file (or stdin) is one document: one record, offsets into the whole file",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32, help="sentences per model batch (default 32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (shown only on a terminal)")
    parser.add_argument(
        "--no-runtime-cache", action="store_true",
        help="load the full model each time instead of its cached fast-start export (see NAGNER_CACHE)",
    )
    parser.add_argument(
        "--threshold", type=float, default=None,
        help="drop entities scoring below this (0..1; default: the threshold the model was tuned to on dev)"
    )
    add_exit_arguments(parser)
    parser.set_defaults(run=run)


def _input_lines(args: argparse.Namespace) -> tuple[Iterator[str], str]:
    """The input lines and the name errors give them."""
    if args.input is not None and args.texts:
        raise NagNerInputError("give either TEXT arguments or --input, not both")
    if args.input == "-" or args.texts == ["-"]:
        return iter_stdin_lines(), "<stdin>"
    if args.input is not None:
        return iter_file_lines(args.input), args.input
    if "-" in args.texts:
        raise NagNerInputError("'-' (read stdin) cannot be mixed with TEXT arguments")
    if not args.texts:
        raise NagNerInputError("nothing to predict: give TEXT arguments, '-' for stdin, or --input FILE")
    return iter(args.texts), "<argument>"


def _document(args: argparse.Namespace) -> tuple[Iterator[str], str]:
    """The whole --input file (or stdin) as the only text."""
    if args.texts and args.texts != ["-"]:
        raise NagNerInputError("--document reads --input FILE or stdin; each TEXT argument is already one document")
    if args.words:
        raise NagNerInputError("--document takes raw text, not --words")
    text, source = read_document(args.input)
    return iter([text]), source


def run(args: argparse.Namespace) -> int:
    """Predict and write; returns the exit status."""
    lines, source = _document(args) if args.document else _input_lines(args)
    if args.output is not None:
        for path in output_paths(args.format, args.output):
            check_output_path(path)
    elif args.format == "brat":
        raise NagNerInputError("--format brat writes two files: give --output FILE (FILE.txt and FILE.ann)")
    elif hasattr(sys.stdout, "reconfigure") and (sys.stdout.encoding or "").lower().replace("-", "") != "utf8":
        sys.stdout.reconfigure(encoding="utf-8")
    fix_mmap_threshold()  # flat memory on long inputs
    from nagner.runtime import load_predictor  # torch: after the cheap checks

    # early exiting needs the encoder's layers (hooks), not the exported runtime
    model = with_exits(load_predictor(args.model, use_cache=not args.no_runtime_cache and args.exits is None), args)
    bar = progress_bar(not args.no_progress and (args.input is not None or args.texts == ["-"]))
    sentences = predict_stream(
        model, lines, words=args.words, source=source, batch_size=args.batch_size, threshold=args.threshold,
        progress=bar,
    )
    try:
        write_predictions(sentences, args.format, args.output)
    except BrokenPipeError:
        # The reader went away (`nagner predict ... | head`): stop quietly, without a traceback at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        if bar is not None:
            bar.close()
    return 0
