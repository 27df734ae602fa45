"""Retrieval quality against gold passages: recall@k and gold coverage@k.

Both retrieve once per query (at the largest k) and skip queries whose gold set is empty (nothing to
find: they would count as misses or hits arbitrarily). With no query left every value is 0.0, which
keeps reports JSON-safe; callers that need to tell "no data" apart check their gold sets.
"""

from __future__ import annotations

from collections.abc import Sequence

from knowledge_qa.retrieval.base import Retriever

DEFAULT_KS = (1, 5, 10, 20)


def _ranked_ids(
    retriever: Retriever, queries: Sequence[str], gold_ids: Sequence[set[str]], ks: Sequence[int]
) -> tuple[list[list[str]], list[set[str]]]:
    """Ranked passage ids (top max(ks)) and gold sets of the queries that have gold passages."""
    if len(queries) != len(gold_ids):
        raise ValueError(f"{len(queries)} queries but {len(gold_ids)} gold sets")
    if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {tuple(ks)}")
    kept = [i for i, gold in enumerate(gold_ids) if gold]
    if not kept:
        return [], []
    results = retriever.search_batch([queries[i] for i in kept], max(ks))
    return [[hit.passage.id for hit in hits] for hits in results], [set(gold_ids[i]) for i in kept]


def recall_at_k(
    retriever: Retriever, queries: Sequence[str], gold_ids: Sequence[set[str]], ks: Sequence[int] = DEFAULT_KS
) -> dict[int, float]:
    """{k: fraction of queries with at least one gold passage id among their top k passages}.

    ``gold_ids[i]`` is the set of passage ids that answer ``queries[i]``; queries with an empty set are
    left out of the fraction.
    """
    ranked, gold = _ranked_ids(retriever, queries, gold_ids, ks)
    if not ranked:
        return {k: 0.0 for k in ks}
    return {
        k: sum(bool(gold_set & set(ids[:k])) for ids, gold_set in zip(ranked, gold)) / len(ranked) for k in ks
    }


def gold_coverage(
    retriever: Retriever, queries: Sequence[str], gold_ids: Sequence[set[str]], ks: Sequence[int] = DEFAULT_KS
) -> dict[int, float]:
    """{k: mean over queries of the fraction of their gold passage ids found in their top k}.

    Stricter than `recall_at_k` for questions needing several passages (multi-hop evidence): finding
    one of two gold passages counts 0.5, not 1. Queries with an empty gold set are left out.
    """
    ranked, gold = _ranked_ids(retriever, queries, gold_ids, ks)
    if not ranked:
        return {k: 0.0 for k in ks}
    return {
        k: sum(len(gold_set & set(ids[:k])) / len(gold_set) for ids, gold_set in zip(ranked, gold))
        / len(ranked)
        for k in ks
    }
