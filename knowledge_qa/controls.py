"""Knowledge controls: does the answer depend on the facts the agent found?

The answering model (the agent's FinalAnswer model) is asked again on states built from other
knowledge, and its correctness per question is compared with the agent's (paired tests in
`knowledge_qa.significance`):

* gold facts of the question itself (an upper bound for what its knowledge could give);
* gold facts of another question (a derangement: no question keeps its own);
* the agent's own facts, given to another question: if this scores like the full agent, the facts
  it found do not move the answer;
* no knowledge: the bare question.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from knowledge_qa.agent import vote
from knowledge_qa.models.base import TextModel
from knowledge_qa.prompts import YES_NO_OPTIONS, final_answer_prompt, render_state
from knowledge_qa.state import QuestionState
from knowledge_qa.strategyqa import StrategyQuestion
from knowledge_qa.training.examples import align_steps

Facts = list[tuple[str, str]]  # (sub-question, answer) lines of one state


def derangement(count: int, seed: int = 0) -> list[int]:
    """A seeded permutation of range(count) without fixed points (for count ≥ 2): question i gets
    the knowledge of question ``derangement[i]``."""
    rng = random.Random(seed)
    order = list(range(count))
    while count > 1 and any(i == j for i, j in enumerate(order)):
        rng.shuffle(order)
    return order


def gold_facts(question: StrategyQuestion) -> Facts:
    """The annotated knowledge of ``question`` as state lines: each decomposition step but the last
    with the gold fact aligned to it (`align_steps`)."""
    return [(step.sub_question, step.answer) for step in align_steps(question) if step.how != "final"]


def answer_from_states(answerer: TextModel, questions: Sequence[StrategyQuestion], states: Sequence[Sequence[Facts]]) -> list[bool]:
    """Per question, the answerer's yes/no on each of its states (one per branch; none: the bare
    question), voted as the agent votes; returns whether each question is answered correctly."""
    prompts, owners = [], []
    for index, (question, branches) in enumerate(zip(questions, states, strict=True)):
        for facts in branches or [[]]:
            prompts.append(final_answer_prompt(render_state(" ".join(question.question.split()), list(facts))))
            owners.append(index)
    rows = answerer.score(prompts, list(YES_NO_OPTIONS))
    voted: list[list[QuestionState]] = [[] for _ in questions]
    for owner, (yes, no) in zip(owners, rows, strict=True):
        voted[owner].append(QuestionState(questions[owner].question, answer="yes" if yes - no > 0 else "no", answer_margin=yes - no))
    return [(vote(branches)[0] == "yes") == question.answer for question, branches in zip(questions, voted)]


def agent_facts(record: dict[str, Any]) -> list[Facts]:
    """The (sub-question, fact) lines of each branch of one finished trace record: what its
    RetrieveExtract and SelfAnswer steps wrote."""
    return [
        [(step["sub_question"], step["output"]) for step in branch["steps"] if step["action"] in ("RetrieveExtract", "SelfAnswer")]
        for branch in record["branches"]
    ]


def knowledge_controls(
    answerer: TextModel, questions: Sequence[StrategyQuestion], agent_records: Sequence[dict[str, Any]], seed: int = 0
) -> dict[str, list[bool]]:
    """Per-question correctness of every control (module docstring), all scored by ``answerer``;
    ``agent_records``: the full agent's finished trace records, in the order of ``questions``."""
    gold = [[gold_facts(q)] for q in questions]
    found = [agent_facts(record) for record in agent_records]
    other = derangement(len(questions), seed)
    return {
        "oracle: gold dev facts": answer_from_states(answerer, questions, gold),
        "oracle facts of another question": answer_from_states(answerer, questions, [gold[j] for j in other]),
        "the full agent's facts of another question": answer_from_states(answerer, questions, [found[j] for j in other]),
        "no knowledge: the bare question": answer_from_states(answerer, questions, [[] for _ in questions]),
    }
