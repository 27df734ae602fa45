"""Retriever kinds by name: build a new retriever of a kind, load a saved one of any kind."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from knowledge_qa.corpus import Passage
from knowledge_qa.errors import QAInputError
from knowledge_qa.retrieval.base import Retriever
from knowledge_qa.retrieval.bm25 import BM25Retriever
from knowledge_qa.retrieval.dense import DenseRetriever
from knowledge_qa.retrieval.index_folder import SETTINGS_FILE, read_settings
from knowledge_qa.retrieval.two_level import TwoLevelRetriever

# build_retriever kind → (class kind in retriever.json, scorer of two-level search or None)
BUILD_KINDS: dict[str, tuple[str, str | None]] = {
    "bm25": ("bm25", None),
    "dense": ("dense", None),
    "two_level-bm25": ("two_level", "bm25"),
    "two_level-dense": ("two_level", "dense"),
}
LOAD_KINDS = ("bm25", "dense", "two_level")


def build_retriever(passages: Sequence[Passage], kind: str, **options: Any) -> Retriever:
    """A new retriever of ``kind`` over ``passages``.

    Kinds: ``"bm25"`` (options of `BM25Retriever`: k1, b, title_weight), ``"dense"`` (options of
    `DenseRetriever`: encoder, batch_size, device, use_faiss, max_length), ``"two_level-bm25"`` and
    ``"two_level-dense"`` (two-level search scoring documents and passages with BM25 / dense; options:
    ``documents`` plus those of the scorer). Unknown kinds or options raise QAInputError.
    """
    if kind not in BUILD_KINDS:
        raise QAInputError(f"unknown retriever kind {kind!r}; expected one of {', '.join(BUILD_KINDS)}")
    class_kind, scorer = BUILD_KINDS[kind]
    allowed = {"bm25": BM25Retriever.OPTIONS, "dense": DenseRetriever.OPTIONS}[scorer or class_kind]
    if scorer is not None:
        allowed = allowed | {"documents"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise QAInputError(
            f"unknown option(s) {', '.join(unknown)} for a {kind!r} retriever; "
            f"expected {', '.join(sorted(allowed))}"
        )
    if class_kind == "bm25":
        return BM25Retriever(passages, **options)
    if class_kind == "dense":
        return DenseRetriever(passages, **options)
    return TwoLevelRetriever.build(passages, kind=scorer, **options)


def load_retriever(
    directory: str | Path, *, device: str | None = None, use_faiss: bool | None = None
) -> Retriever:
    """The retriever saved in ``directory``, whatever its kind (read from retriever.json).

    ``device`` and ``use_faiss`` choose how a dense index searches (see `DenseRetriever`); BM25 ignores
    them. Raises QAInputError naming the path when the folder or retriever.json is missing, the kind
    is unknown, or the corpus or index files are corrupt or do not match.
    """
    kind = read_settings(directory)["kind"]
    if kind not in LOAD_KINDS:
        raise QAInputError(
            f"unknown retriever kind {kind!r}; expected one of {', '.join(LOAD_KINDS)}", Path(directory) / SETTINGS_FILE
        )
    if kind == "bm25":
        return BM25Retriever.load(directory)
    if kind == "dense":
        return DenseRetriever.load(directory, device=device, use_faiss=use_faiss)
    return TwoLevelRetriever.load(directory, device=device, use_faiss=use_faiss)
