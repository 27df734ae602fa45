"""The knowledge controls (`knowledge_qa.controls`): the derangement keeps no question's own
knowledge, the answerer sees exactly the facts of each control's state, and a fact that decides the
answer makes the controls come out as the module says they should."""

from __future__ import annotations

from knowledge_qa.controls import agent_facts, answer_from_states, derangement, knowledge_controls
from knowledge_qa.models.base import TextModel
from knowledge_qa.strategyqa import StrategyQuestion


class FactReader(TextModel):
    """Says "yes" when the prompt holds the word YES (in a fact), "no" otherwise; keeps the prompts."""

    def __init__(self):
        self.prompts: list[str] = []

    def generate(self, prompts, *, max_new_tokens=64, num_candidates=1, stop=()):
        raise AssertionError("controls only score")

    def score(self, prompts, options):
        assert list(options) == ["yes", "no"]
        self.prompts.extend(prompts)
        return [[1.0, 0.0] if "YES" in p else [0.0, 1.0] for p in prompts]


def question(qid: str, answer: bool, fact: str) -> StrategyQuestion:
    return StrategyQuestion(qid, f"Is {qid} true?", answer, decomposition=[f"What colour is {qid}?", "Is #1 bright?"], facts=[fact])


def test_derangement_is_a_seeded_permutation_without_fixed_points():
    for count in (2, 3, 10, 229):
        order = derangement(count, seed=7)
        assert sorted(order) == list(range(count)) and all(i != j for i, j in enumerate(order))
        assert order == derangement(count, seed=7)
    assert derangement(1) == [0]


def test_answer_from_states_votes_the_branches_and_falls_back_to_the_bare_question():
    reader = FactReader()
    questions = [question("a", True, ""), question("b", False, ""), question("c", True, "")]
    states = [
        [[("What about a?", "YES indeed")], [("What about a?", "YES again")], [("What about a?", "nope")]],  # 2 of 3: yes
        [],  # no branch: the bare question, read as "no"
        [[("What about c?", "nope")]],
    ]
    assert answer_from_states(reader, questions, states) == [True, True, False]
    assert len(reader.prompts) == 5 and "YES again" in reader.prompts[1] and "Is b true?" in reader.prompts[3]


def test_controls_follow_the_facts():
    """Questions whose gold fact holds the deciding word: the oracle is right on all, facts of
    another question are right only where the two answers agree, and the agent's (useless) facts
    and the bare question say "no" everywhere."""
    reader = FactReader()
    questions = [question("alpha", True, "Alpha colour: YES"), question("beta", False, "Beta colour: no"),
                 question("gamma", True, "Gamma colour: YES"), question("delta", False, "Delta colour: no")]
    records = [{"branches": [{"steps": [
        {"action": "AddDecomp", "sub_question": "", "output": "plan"},
        {"action": "RetrieveExtract", "sub_question": f"What colour is {q.qid}?", "output": "nothing useful"},
    ]}]} for q in questions]
    assert agent_facts(records[0]) == [[("What colour is alpha?", "nothing useful")]]
    found = knowledge_controls(reader, questions, records, seed=0)
    other = derangement(4, 0)
    assert found["oracle: gold dev facts"] == [True, True, True, True]
    assert found["oracle facts of another question"] == [questions[j].answer == q.answer for q, j in zip(questions, other)]
    assert found["the full agent's facts of another question"] == [False, True, False, True]
    assert found["no knowledge: the bare question"] == [False, True, False, True]
