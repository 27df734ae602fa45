"""One retrieval interface for every retriever: ``search(query, k)`` → passages, best first, and an
index that is built once and saved to / loaded from a folder.

A saved index is a folder with ``retriever.json`` (``{"kind": ..., ...settings}``), the corpus it
was built from (``passages.arrow``) and the kind's own files; `load_retriever` reads any kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from knowledge_qa.corpus import Passage


@dataclass(frozen=True)
class ScoredPassage:
    """A retrieved passage and its retriever score (higher is better; scales differ by retriever)."""

    passage: Passage
    score: float


class Retriever(ABC):
    """Search over a fixed corpus of passages."""

    kind: str  # the name in retriever.json

    @abstractmethod
    def search_batch(self, queries: Sequence[str], k: int) -> list[list[ScoredPassage]]:
        """The top ``k`` passages for every query (fewer when the corpus is smaller), best first."""

    def search(self, query: str, k: int) -> list[ScoredPassage]:
        """The top ``k`` passages for one query, best first."""
        return self.search_batch([query], k)[0]

    @abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write the index to ``directory`` (created if needed; written so that a crash leaves no
        half index that loads)."""


def top_k(values: np.ndarray, k: int, indices: np.ndarray | None = None) -> list[tuple[int, float]]:
    """The best ``k`` (corpus index, score) pairs, best first; equal scores in corpus order.

    ``values`` [C] are the scores of the passages at corpus ``indices`` [C] (None: the whole corpus,
    ``values`` [N] in corpus order). Only the entries that can make the top ``k`` are sorted (a
    partition first), so this stays linear in C for large corpora.
    """
    indices = np.arange(len(values)) if indices is None else np.asarray(indices, dtype=np.int64)  # [C]
    count = min(k, len(values))
    if count <= 0:
        return []
    if count < len(values):
        # Keep every entry tied with the k-th best so the corpus-order tie break sees all of them.
        kth = np.partition(values, len(values) - count)[len(values) - count]
        keep = np.flatnonzero(values >= kth)  # [>= count]
        indices, values = indices[keep], values[keep]
    order = np.lexsort((indices, -values))[:count]  # primary key: score, descending; then index
    return [(int(indices[i]), float(values[i])) for i in order]
