"""Retrievers of `knowledge_qa`: BM25, dense (sentence embeddings) and two-level (documents, then
passages), one `Retriever` interface, index folders saved crash-safely and loaded by kind, and
recall metrics."""

from knowledge_qa.retrieval.base import Retriever, ScoredPassage
from knowledge_qa.retrieval.bm25 import BM25Retriever
from knowledge_qa.retrieval.dense import DEFAULT_ENCODER, DenseRetriever, SentenceEncoder, faiss_available
from knowledge_qa.retrieval.recall import gold_coverage, recall_at_k
from knowledge_qa.retrieval.registry import BUILD_KINDS, build_retriever, load_retriever
from knowledge_qa.retrieval.two_level import TwoLevelRetriever, document_passages

__all__ = [
    "BUILD_KINDS",
    "DEFAULT_ENCODER",
    "BM25Retriever",
    "DenseRetriever",
    "Retriever",
    "ScoredPassage",
    "SentenceEncoder",
    "TwoLevelRetriever",
    "build_retriever",
    "document_passages",
    "faiss_available",
    "gold_coverage",
    "load_retriever",
    "recall_at_k",
]
