"""The question state Q_t of the agent: the question and every step taken so far.

Each `Step` records one action with its input, its output and, when the model's output could not
be used, the fallback that replaced it, so a trace shows exactly what happened.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

# StrategyQA's reference to the answer of sub-question k ("#1", or "# 1" after a WordPiece round trip).
REFERENCE = re.compile(r"#\s*(\d+)")


def resolve_references(text: str, answers: list[str]) -> str:
    """``text`` with each ``#k`` replaced by ``answers[k - 1]``; references beyond them stay as they are."""

    def substitute(match: re.Match[str]) -> str:
        index = int(match.group(1)) - 1
        return answers[index] if 0 <= index < len(answers) else match.group(0)

    return REFERENCE.sub(substitute, text)


class Action(str, Enum):
    """The closed action set of GEEK."""

    ADD_DECOMP = "AddDecomp"
    RETRIEVE_EXTRACT = "RetrieveExtract"
    SELF_ANSWER = "SelfAnswer"
    FINAL_ANSWER = "FinalAnswer"


@dataclass
class Step:
    """One action taken. ``sub_question`` is the sub-question it serves (AddDecomp: the one it
    added); ``output`` is what enters the state (a sub-question, a fact, an answer, "yes"/"no")."""

    action: Action
    sub_question: str = ""
    output: str = ""
    hint: str = ""  # AddDecomp's pseudo-answer for this sub-question (never shown to the core model)
    passages: list[dict[str, Any]] = field(default_factory=list)  # RetrieveExtract: [{id, title, score}]
    action_scores: dict[str, float] = field(default_factory=dict)  # log-likelihood of every allowed action
    fallback: str = ""  # why the model's output was replaced, if it was
    raw_output: str = ""  # the model's text before parsing, when it differs from ``output``

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["action"] = self.action.value
        return {key: value for key, value in record.items() if value not in ("", [], {})}


@dataclass
class QuestionState:
    """Q_t of one branch: the question, the steps so far, the open sub-question (added by AddDecomp,
    not answered yet) with its pseudo-answer hint, and the rest of the last plan (its later
    sub-questions and pseudo-answers, used only as hints)."""

    question: str
    steps: list[Step] = field(default_factory=list)
    open_sub_question: str | None = None
    open_hint: str = ""
    plan: list[tuple[str, str]] = field(default_factory=list)
    answer: str | None = None  # "yes" / "no" once FinalAnswer ran
    answer_margin: float = 0.0  # log p(yes) - log p(no) of the final answer

    def answered(self) -> list[tuple[str, str]]:
        """(sub-question, answer) pairs in order: what the core model sees."""
        return [
            (step.sub_question, step.output)
            for step in self.steps
            if step.action in (Action.RETRIEVE_EXTRACT, Action.SELF_ANSWER)
        ]

    def count(self, action: Action) -> int:
        return sum(step.action == action for step in self.steps)

    def resolve_references(self, text: str) -> str:
        """``text`` with StrategyQA's ``#k`` (the answer of sub-question k) replaced by that answer,
        for retrieval queries; unknown references stay as they are."""
        return resolve_references(text, [answer for _, answer in self.answered()])

    def copy(self) -> QuestionState:
        """An independent copy (a new exploration branch)."""
        return QuestionState(
            self.question,
            [Step(**vars(s)) for s in self.steps],
            self.open_sub_question,
            self.open_hint,
            list(self.plan),
            self.answer,
            self.answer_margin,
        )
