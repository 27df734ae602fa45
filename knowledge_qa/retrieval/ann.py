"""FAISS indexes for inner-product search over unit-length embeddings: the exact one and two
approximate ones for corpora too large to scan.

* ``"flat"``: `IndexFlatIP`, exact; memory N·d·4 bytes, time linear in N per query.
* ``"hnsw"``: `IndexHNSWFlat` (inner product), a graph over the full vectors; no training, fast
  queries with high recall, memory a little above flat (the vectors plus ``hnsw_m`` links each).
  ``ef_search`` trades recall for speed at query time.
* ``"ivf-pq"``: `IndexIVFPQ`, vectors clustered into ``nlist`` lists and compressed to ``pq_m`` bytes
  (8-bit codes; fewer bits below 256 training vectors); trained on a seeded sample of ``train_size``
  vectors, or 39 per list if that is more (what FAISS asks for). Memory ~N·pq_m bytes instead of
  N·d·4 (48 bytes instead of 1,536 for MiniLM); ``nprobe`` lists are scanned per query.

The approximate indexes only propose candidates; `DenseRetriever` re-scores them exactly against the
stored embeddings (memory-mapped, so only the candidates' rows are read), which repairs PQ's
distance errors among the candidates. What an index misses, re-scoring cannot bring back: the recall
of the approximate indexes against the exact one is in ``bench/retrieval_scale.py``.

Vectors are added in batches of ``add_batch`` rows, so a memory-mapped [N, d] array is never copied
whole into RAM by this module (FAISS keeps its own copy for flat and HNSW; that is their memory).
Indexes are written with `faiss.write_index`; `read_ann_index` memory-maps the file where FAISS
supports it (flat and IVF indexes), so loading does not read a large index into RAM first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from knowledge_qa.errors import QAInputError

INDEX_TYPES = ("flat", "hnsw", "ivf-pq")
# Candidates an approximate index proposes for exact re-scoring, by default. PQ's coarse distances
# need more: on 1 M synthetic vectors IVF-PQ's recall@10 after re-scoring was 0.79 / 0.94 / 1.00 with
# 100 / 200 / 400 candidates (0.44 / 0.50 / 0.62 ms per query); HNSW ranks with full vectors.
DEFAULT_RERANK = {"flat": 0, "hnsw": 100, "ivf-pq": 400}


@dataclass(frozen=True)
class AnnSettings:
    """Which index and its knobs (see the module docstring). ``nlist`` None: 4·√N, between 1 and N/39
    (FAISS wants about 39 training points per list)."""

    index_type: str = "flat"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    nlist: int | None = None
    pq_m: int = 48
    nprobe: int = 32
    train_size: int = 100_000
    add_batch: int = 65_536
    seed: int = 0

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise QAInputError(f"unknown index type {self.index_type!r}; types: {', '.join(INDEX_TYPES)}")
        for name in ("hnsw_m", "ef_construction", "ef_search", "pq_m", "nprobe", "train_size", "add_batch"):
            if getattr(self, name) < 1:
                raise QAInputError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lists_for(self, count: int) -> int:
        if self.nlist is not None:
            return max(1, min(self.nlist, count))
        return max(1, min(int(4 * math.sqrt(count)), count // 39))


def _faiss():
    try:
        import faiss
    except ImportError:
        raise QAInputError("approximate indexes need faiss (pip install faiss-cpu)") from None
    return faiss


def build_ann_index(
    vectors: np.ndarray, settings: AnnSettings, log: Callable[[str], None] | None = None
):
    """A FAISS index over ``vectors`` [N, d] (float32, unit rows; a memmap is fine), built in batches."""
    faiss = _faiss()
    count, dimension = vectors.shape
    if settings.index_type == "flat":
        index = faiss.IndexFlatIP(dimension)
    elif settings.index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.ef_construction
    else:
        if dimension % settings.pq_m:
            raise QAInputError(f"pq_m {settings.pq_m} must divide the embedding dimension {dimension}")
        lists = settings.lists_for(count)
        # FAISS asks for about 39 training points per list; fewer train the clustering poorly.
        wanted = max(settings.train_size, 39 * lists)
        sample = np.sort(np.random.default_rng(settings.seed).permutation(count)[: min(count, wanted)])
        # 8-bit codes need 256 training points per sub-quantiser; tiny corpora get fewer bits.
        bits = min(8, max(1, int(math.log2(max(2, len(sample))))))
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dimension), dimension, lists, settings.pq_m, bits, faiss.METRIC_INNER_PRODUCT)
        if log:
            log(f"training ivf-pq ({lists} lists, {settings.pq_m} bytes per vector) on {len(sample)} vectors")
        index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    for start in range(0, count, settings.add_batch):
        index.add(np.ascontiguousarray(vectors[start : start + settings.add_batch], dtype=np.float32))
        if log and count > settings.add_batch:
            log(f"indexed {min(count, start + settings.add_batch)}/{count} vectors")
    configure_search(index, settings)
    return index


def configure_search(index, settings: AnnSettings) -> None:
    """Set the query-time knobs (``ef_search`` for HNSW, ``nprobe`` for IVF) on ``index``."""
    faiss = _faiss()
    if settings.index_type == "hnsw":
        faiss.downcast_index(index).hnsw.efSearch = settings.ef_search
    elif settings.index_type == "ivf-pq":
        faiss.extract_index_ivf(index).nprobe = settings.nprobe


def write_ann_index(index, path: str | Path) -> None:
    _faiss().write_index(index, str(path))


def read_ann_index(path: str | Path, settings: AnnSettings):
    """The index written at ``path``, memory-mapped where FAISS supports it, with ``settings``'
    query-time knobs."""
    faiss = _faiss()
    path = Path(path)
    if not path.is_file():
        raise QAInputError("approximate index file not found; rebuild the index", path)
    flags = faiss.IO_FLAG_MMAP if settings.index_type in ("flat", "ivf-pq") else 0
    try:
        index = faiss.read_index(str(path), flags)
    except RuntimeError as error:
        raise QAInputError(f"cannot read the FAISS index ({str(error).splitlines()[0]}); rebuild the index", path) from None
    configure_search(index, settings)
    return index
