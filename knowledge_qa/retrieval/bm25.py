"""Lexical retrieval: Okapi BM25 over "title + text" with the `bm25s` library.

Texts are lower-cased and split into words by bm25s's tokenizer, English stopwords removed (no
stemming). The index itself is bm25s's sparse score matrix, saved with bm25s's own files under
``bm25/`` in the index folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from knowledge_qa.corpus import Passage
from knowledge_qa.errors import QAInputError
from knowledge_qa.retrieval.base import Retriever, ScoredPassage, top_k
from knowledge_qa.retrieval.index_folder import read_index, save_index

BM25_FOLDER = "bm25"
STOPWORDS = "en"


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Word tokens of every text (bm25s's tokenizer: lower-cased, English stopwords removed)."""
    if not texts:
        return []
    return bm25s.tokenize(list(texts), stopwords=STOPWORDS, return_ids=False, show_progress=False)


def indexed_text(passage: Passage, title_weight: bool) -> str:
    """The text BM25 indexes for a passage: title and text, or the text alone."""
    if title_weight and passage.title:
        return f"{passage.title} {passage.text}"
    return passage.text


class BM25Retriever(Retriever):
    """BM25 search over a fixed corpus.

    ``k1`` and ``b`` are the usual BM25 parameters (term-frequency saturation, length normalisation).
    With ``title_weight`` (default) the title is indexed with the text, so words of a passage's title
    count like words of its text (a question naming an entity finds that entity's passages); without
    it only the text is indexed. Every passage gets a score, so ``k`` results come back even when fewer
    match (the rest score 0); equal scores are ranked in corpus order.
    """

    kind = "bm25"
    OPTIONS = frozenset({"k1", "b", "title_weight"})  # keyword options `build_retriever` accepts

    def __init__(
        self, passages: Sequence[Passage], *, k1: float = 1.5, b: float = 0.75, title_weight: bool = True
    ):
        if not passages:
            raise QAInputError("cannot build a BM25 index over an empty corpus")
        self.passages = list(passages)
        self.k1 = k1
        self.b = b
        self.title_weight = title_weight
        self._index = bm25s.BM25(k1=k1, b=b)
        self._index.index(
            tokenize([indexed_text(p, title_weight) for p in self.passages]), show_progress=False
        )

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for ``query``: [N] float32, in corpus order."""
        (tokens,) = tokenize([query])
        # Query words absent from the corpus are dropped: they would score 0 everywhere anyway.
        return self._index.get_scores_from_ids(self._index.get_tokens_ids(tokens))

    def search_batch(self, queries: Sequence[str], k: int) -> list[list[ScoredPassage]]:
        """The top ``k`` passages for every query, best first (all of them when ``k`` >= the corpus size)."""
        return self.search_batch_within(queries, k, [None] * len(queries))

    def search_batch_within(
        self, queries: Sequence[str], k: int, candidates: Sequence[np.ndarray | None]
    ) -> list[list[ScoredPassage]]:
        """Like `search_batch`, ranking for query i only the passages at corpus indices
        ``candidates[i]`` ([C_i] ints; None = all): the second level of two-level search."""
        results = []
        for query, allowed in zip(queries, candidates, strict=True):
            scores = self.scores(query)  # [N]
            ranked = top_k(scores, k) if allowed is None else top_k(scores[allowed], k, allowed)
            results.append([ScoredPassage(self.passages[i], score) for i, score in ranked])
        return results

    def index_settings(self) -> dict[str, Any]:
        """Settings stored in retriever.json."""
        return {
            "kind": self.kind,
            "k1": self.k1,
            "b": self.b,
            "title_weight": self.title_weight,
            "stopwords": STOPWORDS,
        }

    def write_index_files(self, directory: Path) -> None:
        """bm25s's index files, under ``directory/bm25``."""
        self._index.save(str(directory / BM25_FOLDER), show_progress=False)

    def save(self, directory: str | Path) -> None:
        """Write the index folder (retriever.json, passages.arrow, bm25/), replacing an old index."""
        save_index(self, directory)

    @classmethod
    def from_index_files(
        cls, directory: Path, settings: dict[str, Any], passages: Sequence[Passage]
    ) -> BM25Retriever:
        """A retriever from its files in ``directory`` and already read settings and passages (used by
        `load` and by two-level search, whose sub-indexes share one corpus file)."""
        self = cls.__new__(cls)
        self.passages = passages
        self.k1 = settings.get("k1", 1.5)
        self.b = settings.get("b", 0.75)
        self.title_weight = settings.get("title_weight", True)
        folder = directory / BM25_FOLDER
        try:
            self._index = bm25s.BM25.load(str(folder), show_progress=False)
        except (OSError, ValueError) as error:
            raise QAInputError(f"cannot read the BM25 index ({error}); rebuild it", folder) from None
        if self._index.scores.get("num_docs") != len(passages):
            raise QAInputError(
                f"the BM25 index has {self._index.scores.get('num_docs')} documents but the corpus "
                f"{len(passages)} passages; rebuild it",
                folder,
            )
        return self

    @classmethod
    def load(cls, directory: str | Path) -> BM25Retriever:
        """The BM25 retriever saved in ``directory`` (no re-indexing)."""
        settings, passages = read_index(directory, cls.kind)
        return cls.from_index_files(Path(directory), settings, passages)
