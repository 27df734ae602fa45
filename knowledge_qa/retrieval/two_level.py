"""Two-level search (as in GEEK): find the best documents first, then the best passages inside them.

A document is all passages sharing a title; it is represented by its title and first passage (the
paper's "title + first paragraph"). Level one retrieves the top ``documents`` documents for the
query; level two ranks only the passages of those documents. A passage of any other document is
never returned, however well it matches on its own: the document filter keeps the evidence on the
entities the question is about.

Both levels use one scorer kind, BM25 or dense, each with its own index (BM25 statistics of the
documents differ from those of the passages; a dense document embedding is its first passage's).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from knowledge_qa.corpus import Passage, iter_titles
from knowledge_qa.errors import QAInputError
from knowledge_qa.retrieval.base import Retriever, ScoredPassage
from knowledge_qa.retrieval.bm25 import BM25Retriever
from knowledge_qa.retrieval.dense import DenseRetriever
from knowledge_qa.retrieval.index_folder import SETTINGS_FILE, read_index, save_index

DOCUMENTS_FOLDER = "documents"
PASSAGES_FOLDER = "passages"
LevelRetriever = BM25Retriever | DenseRetriever


def _same_passages(first: Sequence[Passage], second: Sequence[Passage]) -> bool:
    """The same passages in the same order, whatever sequence holds them (a list, `ArrowPassages`)."""
    return first is second or (len(first) == len(second) and all(a == b for a, b in zip(first, second)))


def document_passages(passages: Sequence[Passage]) -> tuple[list[Passage], list[np.ndarray]]:
    """The documents of a corpus and their members, in order of first appearance.

    Returns (documents, members): document i is a Passage with id and title = the shared title and
    text = its first passage's text; ``members[i]`` [n_i] holds the corpus indices of its passages.
    """
    position = {passage.id: i for i, passage in enumerate(passages)}
    documents, members = [], []
    for title, group in iter_titles(passages):
        documents.append(Passage(id=title, title=title, text=group[0].text))
        members.append(np.array([position[p.id] for p in group], dtype=np.int64))
    return documents, members


class TwoLevelRetriever(Retriever):
    """Documents first, then passages of the top ``documents`` documents.

    ``document_retriever`` searches the documents of `document_passages` (same order);
    ``passage_retriever`` (BM25 or dense) searches ``passages`` and ranks restricted candidate sets.
    `build` makes both. Returns fewer than ``k`` passages when the selected documents hold fewer.
    """

    kind = "two_level"

    def __init__(
        self,
        passages: Sequence[Passage],
        document_retriever: LevelRetriever,
        passage_retriever: LevelRetriever,
        *,
        documents: int = 100,
    ):
        if documents < 1:
            raise QAInputError(f"documents must be at least 1 (got {documents})")
        self.passages = list(passages)
        self.documents = documents
        self.document_list, self._members = document_passages(self.passages)
        self._document_position = {document.id: i for i, document in enumerate(self.document_list)}
        # A retriever over another corpus would silently map hits to the wrong documents.
        if not _same_passages(document_retriever.passages, self.document_list):
            raise ValueError("document_retriever must search document_passages(passages), in that order")
        if not _same_passages(passage_retriever.passages, self.passages):
            raise ValueError("passage_retriever must search the same passages, in the same order")
        self.document_retriever = document_retriever
        self.passage_retriever = passage_retriever

    @classmethod
    def build(cls, passages: Sequence[Passage], kind: str = "bm25", *, documents: int = 100, **options: Any):
        """Two-level search scoring both levels with ``kind`` ("bm25" or "dense"); ``options`` go to
        `BM25Retriever` / `DenseRetriever`. Dense documents reuse their first passage's embedding
        (same "title: text" input), so each text is encoded once."""
        passages = list(passages)
        document_list, members = document_passages(passages)
        if kind == "bm25":
            return cls(
                passages,
                BM25Retriever(document_list, **options),
                BM25Retriever(passages, **options),
                documents=documents,
            )
        if kind == "dense":
            passage_retriever = DenseRetriever(passages, **options)
            first_rows = np.array([rows[0] for rows in members])  # [D]
            document_retriever = DenseRetriever(
                document_list,
                encoder=passage_retriever.encoder,
                use_faiss=passage_retriever.use_faiss,
                embeddings=passage_retriever.embeddings[first_rows],  # [D, d]
            )
            return cls(passages, document_retriever, passage_retriever, documents=documents)
        raise QAInputError(f"unknown scorer {kind!r} for two-level search; expected 'bm25' or 'dense'")

    def _shared_encoder(self) -> bool:
        """True when both levels embed queries with one encoder (so queries are encoded once)."""
        return (
            isinstance(self.document_retriever, DenseRetriever)
            and isinstance(self.passage_retriever, DenseRetriever)
            and self.document_retriever.encoder is self.passage_retriever.encoder
        )

    def search_batch(self, queries: Sequence[str], k: int) -> list[list[ScoredPassage]]:
        """The top ``k`` passages of every query among the passages of its top documents, best first."""
        if not queries:
            return []
        if self._shared_encoder():
            embedded = self.passage_retriever.encode_queries(queries)  # [Q, d]
            document_hits = self.document_retriever.search_embeddings(embedded, self.documents)
        else:
            document_hits = self.document_retriever.search_batch(queries, self.documents)
        candidates = [
            np.concatenate([self._members[self._document_position[hit.passage.id]] for hit in hits])  # [C]
            for hits in document_hits
        ]
        if self._shared_encoder():
            return self.passage_retriever.search_embeddings_within(embedded, k, candidates)
        return self.passage_retriever.search_batch_within(queries, k, candidates)

    def index_settings(self) -> dict[str, Any]:
        """Settings stored in retriever.json, those of both levels nested."""
        return {
            "kind": self.kind,
            "documents": self.documents,
            "document_index": self.document_retriever.index_settings(),
            "passage_index": self.passage_retriever.index_settings(),
        }

    def write_index_files(self, directory: Path) -> None:
        """Each level's files, under ``documents/`` and ``passages/`` (one corpus file serves both)."""
        for folder, retriever in (
            (DOCUMENTS_FOLDER, self.document_retriever),
            (PASSAGES_FOLDER, self.passage_retriever),
        ):
            (directory / folder).mkdir()
            retriever.write_index_files(directory / folder)

    def save(self, directory: str | Path) -> None:
        """Write the index folder (retriever.json, passages.arrow, documents/, passages/)."""
        save_index(self, directory)

    @classmethod
    def load(
        cls, directory: str | Path, *, device: str | None = None, use_faiss: bool | None = None
    ) -> TwoLevelRetriever:
        """The two-level retriever saved in ``directory``; ``device``/``use_faiss`` for dense levels."""
        directory = Path(directory)
        settings, passages = read_index(directory, cls.kind)
        levels = [settings.get("document_index"), settings.get("passage_index")]
        for level in levels:
            if not isinstance(level, dict) or level.get("kind") not in ("bm25", "dense"):
                raise QAInputError(
                    'two-level settings need "document_index" and "passage_index" objects '
                    "of kind bm25 or dense",
                    directory / SETTINGS_FILE,
                )
        documents = settings.get("documents", 100)
        if not isinstance(documents, int) or isinstance(documents, bool):
            raise QAInputError(
                f'"documents" must be an integer, found {documents!r}', directory / SETTINGS_FILE
            )
        encoder = None
        if all(level["kind"] == "dense" for level in levels) and _same_encoder(*levels):
            encoder = DenseRetriever.encoder_for(levels[1], device)  # load the model once for both levels
        document_list, _ = document_passages(passages)
        loaded = []
        for folder, level, corpus in (
            (DOCUMENTS_FOLDER, levels[0], document_list),
            (PASSAGES_FOLDER, levels[1], passages),
        ):
            if level["kind"] == "bm25":
                loaded.append(BM25Retriever.from_index_files(directory / folder, level, corpus))
            else:
                loaded.append(
                    DenseRetriever.from_index_files(
                        directory / folder, level, corpus, device=device, use_faiss=use_faiss, encoder=encoder
                    )
                )
        return cls(passages, loaded[0], loaded[1], documents=documents)


def _same_encoder(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """True when two dense settings name the same encoder with the same reading options."""
    keys = ("encoder", "encoder_sha256", "max_length", "batch_size")
    return all(first.get(key) == second.get(key) for key in keys)
