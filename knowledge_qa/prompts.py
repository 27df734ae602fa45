"""Every action is a text-to-text task with its own prompt; the same functions build the prompts at
inference time (`agent`) and the training examples (`training.examples`), so the two never drift.

Outputs that must be parsed are kept simple: AddDecomp writes ``Q: <sub-question> A: <pseudo-answer>``
pairs; the action and the yes/no answer are never parsed, they are scored over a closed set of options.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from knowledge_qa.corpus import Passage
from knowledge_qa.state import Action

# The option text of each action; the core model is scored on these continuations.
ACTION_OPTIONS: dict[Action, str] = {
    Action.ADD_DECOMP: "decompose",
    Action.RETRIEVE_EXTRACT: "retrieve",
    Action.SELF_ANSWER: "self answer",
    Action.FINAL_ANSWER: "final answer",
}
YES_NO_OPTIONS = ("yes", "no")


def render_state(question: str, answered: Sequence[tuple[str, str]], open_sub_question: str | None = None) -> str:
    """The question state as the core model reads it."""
    lines = [f"Question: {question}"]
    for number, (sub_question, answer) in enumerate(answered, start=1):
        lines.append(f"Q{number}: {sub_question}")
        lines.append(f"A{number}: {answer}")
    if open_sub_question is not None:
        lines.append(f"Q{len(answered) + 1}: {open_sub_question}")
    return "\n".join(lines)


def action_prompt(state_text: str) -> str:
    """Which action next? Scored over `ACTION_OPTIONS` (only those allowed in the state)."""
    return f"{state_text}\nNext action:"


def decompose_prompt(state_text: str) -> str:
    """AddDecomp: write the remaining sub-questions, each with a guessed (pseudo-)answer."""
    return f"Write the remaining sub-questions with guessed answers.\n{state_text}\nPlan:"


def self_answer_prompt(state_text: str) -> str:
    """SelfAnswer: answer the open (last) sub-question from the model's own knowledge."""
    return f"Answer the last sub-question briefly.\n{state_text}\nAnswer:"


def extract_prompt(sub_question: str, hint: str, passages: Sequence[Passage], max_passage_chars: int = 600) -> str:
    """RetrieveExtract: write one short fact answering ``sub_question`` from the passages; the
    pseudo-answer ``hint`` says which aspect to extract."""
    context = "\n".join(f"[{p.title}] {p.text[:max_passage_chars]}" for p in passages)
    hint_line = f"\nHint: {hint}" if hint else ""
    return f"Extract a short fact that answers the question.\nQuestion: {sub_question}{hint_line}\nPassages:\n{context}\nFact:"


def final_answer_prompt(state_text: str) -> str:
    """FinalAnswer: yes or no, scored over `YES_NO_OPTIONS`."""
    return f"Answer the question with yes or no.\n{state_text}\nFinal answer:"


def format_plan(pairs: Sequence[tuple[str, str]]) -> str:
    """AddDecomp's target text: ``Q: … A: … Q: … A: …``."""
    return " ".join(f"Q: {question} A: {answer}" for question, answer in pairs)


_PLAN_ITEM = re.compile(r"\bq\s*:\s*(.+?)(?:\s+\ba\s*:\s*(.*?))?\s*(?=\bq\s*:|$)", re.IGNORECASE | re.DOTALL)


def parse_plan(text: str) -> list[tuple[str, str]]:
    """The (sub-question, pseudo-answer) pairs of an AddDecomp output. Tolerant: pieces without a
    ``Q:`` marker give nothing, a missing ``A:`` gives an empty pseudo-answer; an empty list means
    the output was unusable (the agent then falls back and records why)."""
    pairs = []
    for match in _PLAN_ITEM.finditer(text.strip()):
        question = " ".join(match.group(1).split())
        answer = " ".join((match.group(2) or "").split())
        if question:
            pairs.append((question, answer))
    return pairs
