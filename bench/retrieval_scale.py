"""Retrieval at scale: build time, peak memory, batch-1 query latency and recall@10 of the exact index
against the approximate ones (HNSW, IVF-PQ), at 10 k, 100 k and 1 M passages; and the memory of the
corpus itself, JSONL read into Python objects against the memory-mapped Arrow store.

    python bench/retrieval_scale.py                       # 10k, 100k, 1M
    python bench/retrieval_scale.py --sizes 10000,100000  # quicker

SYNTHETIC DATA, said plainly: encoding a million passages with MiniLM is days of this 2-core CPU, so
the vectors are random: unit vectors in 384 dimensions (MiniLM's width) drawn around 2,000 random
centres (so that near neighbours exist, as in real embedding spaces, instead of the uniform sphere
where every point is about equally far); queries are fresh draws from the same mixture. Passages for
the corpus-memory rows are random words, ~300 characters each. Recall and latency of real MiniLM
embeddings will differ; the build/memory/latency scaling and the exact-vs-approximate comparison are
what these rows show.

Each (size, index) row runs in a fresh child process. Memory is the peak of its *anonymous* resident
memory (``RssAnon`` in /proc/self/status, sampled every 20 ms) over its value before the build: what
the index itself allocates. Pages of the memory-mapped vectors file that the build reads are page
cache, not the index's memory, and would be counted by ``ru_maxrss`` (reported too, as "peak RSS").
Search is what `DenseRetriever` does: the index proposes candidates (k + 16 for exact, the default
``rerank`` for approximate: 100 for HNSW, 400 for IVF-PQ), which are re-scored exactly against the
memory-mapped embeddings.
Latency is the median (and 10th–90th percentiles) over 200 queries at batch 1 on 2 threads. Recall@10
is the share of the exact top 10 found in the returned top 10.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "scale"
DIMENSION = 384
CENTRES = 2000
QUERIES = 200
K = 10


def rss_mib(field: str = "RssAnon") -> float:
    """A resident-memory figure of this process from /proc/self/status (RssAnon, VmRSS …), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class AnonPeak:
    """The largest RssAnon seen while the ``with`` block runs (a sampling thread, every 20 ms)."""

    def __enter__(self) -> AnonPeak:
        import threading

        self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mixture(count: int, seed: int, centres: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = centres[rng.integers(0, len(centres), count)] + 0.6 * rng.standard_normal((count, DIMENSION), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def vectors_file(size: int) -> Path:
    """The [size, 384] float32 vectors as a .npy file (made once, in blocks)."""
    path = OUT / f"vectors-{size}.npy"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        centres = np.random.default_rng(0).standard_normal((CENTRES, DIMENSION), dtype=np.float32)
        out = np.lib.format.open_memmap(path.with_suffix(".partial.npy"), mode="w+", dtype=np.float32, shape=(size, DIMENSION))
        for start in range(0, size, 100_000):
            out[start : start + 100_000] = mixture(min(100_000, size - start), 1 + start, centres)
        out.flush()
        del out
        path.with_suffix(".partial.npy").rename(path)
    return path


def queries() -> np.ndarray:
    centres = np.random.default_rng(0).standard_normal((CENTRES, DIMENSION), dtype=np.float32)
    return mixture(QUERIES, 999_999, centres)


def exact_top(size: int) -> np.ndarray:
    """Exact top-K corpus rows of every query [Q, K] (cached)."""
    path = OUT / f"truth-{size}.npy"
    if not path.exists():
        import faiss

        vectors = np.load(vectors_file(size), mmap_mode="r")
        index = faiss.IndexFlatIP(DIMENSION)
        for start in range(0, size, 100_000):
            index.add(np.ascontiguousarray(vectors[start : start + 100_000]))
        np.save(path, index.search(queries(), K)[1])
    return np.load(path)


def one_row(size: int, index_type: str, threads: int) -> dict:
    """Build and query one index in this (fresh) process."""
    import faiss

    from knowledge_qa.retrieval.ann import DEFAULT_RERANK, AnnSettings, build_ann_index

    faiss.omp_set_num_threads(threads)
    vectors = np.load(vectors_file(size), mmap_mode="r")
    asked = queries()
    start_rss = rss_mib()
    settings = AnnSettings(index_type)
    with AnonPeak() as memory:
        began = time.perf_counter()
        index = build_ann_index(vectors, settings)
        build = time.perf_counter() - began
    count = max(K + 16, DEFAULT_RERANK[index_type])
    times, found = [], []
    for query in asked:
        began = time.perf_counter()
        _, candidates = index.search(query[None], count)
        candidates = np.sort(candidates[0][candidates[0] >= 0])
        scores = vectors[candidates] @ query  # exact re-scoring of the candidates' rows
        found.append(candidates[np.argsort(-scores, kind="stable")[:K]])
        times.append(time.perf_counter() - began)
    truth = exact_top(size)
    recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))
    ms = 1000 * np.array(times)
    return {"size": size, "index": index_type, "build_s": build, "peak_anon_mib": memory.peak, "peak_rss_mib": peak_mib(),
            "start_rss_mib": start_rss,
            "query_ms_median": float(np.median(ms)), "query_ms_p10": float(np.percentile(ms, 10)),
            "query_ms_p90": float(np.percentile(ms, 90)), "recall_at_10": recall, "settings": settings.to_dict()}


def corpus_row(size: int, store: str) -> dict:
    """Peak memory of holding a synthetic corpus of ``size`` passages: read_corpus (JSONL → list of
    Passage) or ArrowPassages (memory-mapped), then 1,000 random passages read."""
    from knowledge_qa.corpus import ArrowPassages, read_corpus

    jsonl, arrow = corpus_files(size)
    start_rss = rss_mib()
    with AnonPeak() as memory:
        began = time.perf_counter()
        passages = read_corpus(jsonl) if store == "jsonl" else ArrowPassages(arrow)
        opened = time.perf_counter() - began
        rows = np.random.default_rng(0).integers(0, size, 1000)
        began = time.perf_counter()
        total = sum(len(passages[int(i)].text) for i in rows)
        access = time.perf_counter() - began
    return {"size": size, "store": store, "open_s": opened, "access_1000_ms": 1000 * access, "chars": total,
            "peak_anon_mib": memory.peak, "start_rss_mib": start_rss, "held_anon_mib": rss_mib() - start_rss}


def corpus_files(size: int) -> tuple[Path, Path]:
    """A synthetic JSONL corpus of ``size`` passages and its Arrow copy (made once)."""
    from knowledge_qa.corpus import Passage, iter_corpus, write_arrow_corpus

    jsonl, arrow = OUT / f"corpus-{size}.jsonl", OUT / f"corpus-{size}.arrow"
    if not jsonl.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(size)
        words = np.array(["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(3, 9))) for _ in range(5000)])
        with jsonl.with_suffix(".partial").open("w", encoding="utf-8") as handle:
            for i in range(size):
                text = " ".join(words[rng.integers(0, len(words), 50)]) + "."
                handle.write(json.dumps({"id": f"p{i}", "title": f"Document {i // 10}", "text": text}) + "\n")
        jsonl.with_suffix(".partial").rename(jsonl)
    if not arrow.exists():
        write_arrow_corpus((Passage(p.id, p.title, p.text) for p in iter_corpus(jsonl)), arrow)
    return jsonl, arrow


def child(args: list[str]) -> dict:
    """Run one row in a fresh interpreter and return its JSON."""
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=REPO)
    if result.returncode:
        raise SystemExit(f"row {args} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--indexes", default="flat,hnsw,ivf-pq")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--row", nargs=2, metavar=("SIZE", "INDEX"), help=argparse.SUPPRESS)
    parser.add_argument("--corpus-row", nargs=2, metavar=("SIZE", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        print(json.dumps(one_row(int(args.row[0]), args.row[1], args.threads)))
        return
    if args.corpus_row:
        print(json.dumps(corpus_row(int(args.corpus_row[0]), args.corpus_row[1])))
        return
    rows, corpus = [], []
    for size in [int(s) for s in args.sizes.split(",")]:
        vectors_file(size)
        exact_top(size)
        for index_type in args.indexes.split(","):
            rows.append(child(["--row", str(size), index_type, "--threads", str(args.threads)]))
            print(json.dumps(rows[-1]), flush=True)
        corpus_files(size)
        for store in ("jsonl", "arrow"):
            corpus.append(child(["--corpus-row", str(size), store]))
            print(json.dumps(corpus[-1]), flush=True)
    (OUT / "scale.json").write_text(json.dumps({"indexes": rows, "corpus": corpus}, indent=1))
    print("| passages | index | build s | index memory: peak anonymous MiB over start | peak RSS MiB | query ms, batch 1 (median, p10–p90) | recall@10 vs exact |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']:,} | {r['index']} | {r['build_s']:.1f} | {r['peak_anon_mib'] - r['start_rss_mib']:.0f} | {r['peak_rss_mib']:.0f} | "
              f"{r['query_ms_median']:.2f} ({r['query_ms_p10']:.2f}–{r['query_ms_p90']:.2f}) | {r['recall_at_10']:.3f} |")
    print()
    print("| passages | corpus held as | open s | 1,000 random reads (ms) | anonymous MiB held after opening | peak anonymous MiB over start |")
    print("|---|---|---|---|---|---|")
    for r in corpus:
        held = "list of Passage (read_corpus)" if r["store"] == "jsonl" else "ArrowPassages (memory-mapped)"
        print(f"| {r['size']:,} | {held} | {r['open_s']:.2f} | {r['access_1000_ms']:.1f} | {r['held_anon_mib']:.0f} | "
              f"{r['peak_anon_mib'] - r['start_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
