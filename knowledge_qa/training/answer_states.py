"""FinalAnswer examples on the states the agent builds at test time ("silver" states).

`core_examples` writes FinalAnswer states from StrategyQA's gold facts: concise sentences written by
annotators to answer each sub-question. At test time the agent's state holds what its retriever and
extractor found instead: a passage sentence, often about the right entity but not the asked fact, and
sometimes nothing relevant (the benchmark's corpus holds only 43 % of the dev questions' evidence). A
model trained on gold facts learns to trust every fact line; trained on silver states it learns how
far to trust what retrieval gives it.

A silver state runs the real retriever and extractor over the gold decomposition of a training
question, in step order:

* retrieve steps: the sub-question (``#k`` resolved with the silver answers so far, as the agent
  resolves it) is the query; the top ``top_k`` passages go to the extractor, whose fact is the answer;
* reason steps: the aligned gold fact (what the core model is trained to SelfAnswer), "unknown" when
  there is none; the fact-less last yes/no step stays out, as in `core_examples`;
* ``coverage``: each of the question's own evidence passages stays retrievable with this probability
  (seeded per question) and is withheld from its results otherwise, so that training sees the share
  of missing evidence that evaluation sees (training questions' evidence is all in the corpus);
* without a decomposition (the no-decomposition mode, and questions that come with an answer only)
  the question itself is the one sub-question.

Every retrieval and extraction call is batched over the questions, one step position at a time.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from knowledge_qa.agent import first_sentence
from knowledge_qa.extraction import ExtractionRequest, Extractor
from knowledge_qa.retrieval.base import Retriever
from knowledge_qa.state import resolve_references
from knowledge_qa.strategyqa import StrategyQuestion, evidence_ids
from knowledge_qa.training.examples import (
    PLACEHOLDER,
    TextExample,
    align_steps,
    final_answer_example,
    normalise_space,
)


class _Trajectory:
    """One question's silver state under construction: (sub-question, kind, gold answer) to do."""

    def __init__(self, question: StrategyQuestion, steps: list[tuple[str, str, str]], withheld: set[str]):
        self.question = question
        self.todo = steps
        self.answered: list[tuple[str, str]] = []
        self.withheld = withheld

    def resolve(self, text: str) -> str:
        return resolve_references(text, [answer for _, answer in self.answered])


def silver_final_answer_examples(
    questions: Sequence[StrategyQuestion], retriever: Retriever, extractor: Extractor, **options: Any
) -> list[TextExample]:
    """One FinalAnswer example per question with a gold answer: its silver state (`silver_states`,
    which takes ``options``) and the gold yes/no."""
    answered = [q for q in questions if q.answer is not None]
    states = silver_states(answered, retriever, extractor, **options)
    return [final_answer_example(q, facts) for q, facts in zip(answered, states, strict=True)]


def silver_states(
    questions: Sequence[StrategyQuestion],
    retriever: Retriever,
    extractor: Extractor,
    *,
    with_decomposition: bool = True,
    coverage: float = 1.0,
    top_k: int = 3,
    seed: int = 0,
    stats: Counter[str] | None = None,
) -> list[list[tuple[str, str]]]:
    """The silver state (see the module docstring) of every question, answered or not, as its
    (sub-question, answer) lines in order. ``with_decomposition=False``, or a question without one:
    the question is its own sub-question. ``stats`` (if given) counts questions, retrieve and reason
    steps, withheld passages and extractor fallbacks."""
    if not 0.0 <= coverage <= 1.0:
        raise ValueError(f"coverage must be in [0, 1], got {coverage}")
    counts = stats if stats is not None else Counter()
    trajectories = []
    for question in questions:
        rng = random.Random(f"{seed}/{question.qid}")
        own = sorted(evidence_ids(question))
        withheld = {pid for pid in own if rng.random() >= coverage}
        counts["own_passages"] += len(own)
        counts["withheld_passages"] += len(withheld)
        text = normalise_space(question.question)
        if with_decomposition and question.decomposition:
            aligned = [step for step in align_steps(question) if step.how != "final"]
            steps = [(step.sub_question, step.kind, step.answer if step.has_fact else PLACEHOLDER) for step in aligned]
        else:
            steps = [(text, "retrieve", "")]
        trajectories.append(_Trajectory(question, steps, withheld))
    counts["questions"] += len(trajectories)
    position = 0
    while any(position < len(t.todo) for t in trajectories):
        live = [t for t in trajectories if position < len(t.todo)]
        retrieving = [t for t in live if t.todo[position][1] == "retrieve"]
        for trajectory in live:
            sub_question, kind, answer = trajectory.todo[position]
            if kind != "retrieve":
                counts["reason_steps"] += 1
                trajectory.answered.append((sub_question, answer))
        if retrieving:
            queries = [t.resolve(t.todo[position][0]) for t in retrieving]
            extra = max(len(t.withheld) for t in retrieving)
            found = retriever.search_batch(queries, top_k + extra)
            kept = [[hit for hit in hits if hit.passage.id not in t.withheld][:top_k] for t, hits in zip(retrieving, found)]
            facts = extractor.extract(
                [ExtractionRequest(query, "", [hit.passage for hit in hits]) for query, hits in zip(queries, kept)]
            )
            for trajectory, hits, fact in zip(retrieving, kept, facts):
                counts["retrieve_steps"] += 1
                if not fact:
                    counts["extractor_fallbacks"] += 1
                    fact = first_sentence(hits[0].passage.text) if hits else PLACEHOLDER
                trajectory.answered.append((trajectory.todo[position][0], fact))
        position += 1
    return [t.answered for t in trajectories]
