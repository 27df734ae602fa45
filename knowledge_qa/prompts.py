"""Every action is a text-to-text task with its own prompt; the same templates build the prompts at
inference time (`agent`) and the training examples (`training.examples`), so the two never drift.

Outputs that must be parsed are kept simple: AddDecomp writes ``Q: <sub-question> A: <pseudo-answer>``
pairs; the action and the yes/no answer are never parsed, they are scored over a closed set of options.

A `PromptTemplate` per task (instruction, optional few-shot examples, the cue the model continues
after, stop sequences) renders a `Prompt`: a ``str`` (the completion form, what local models and
``/v1/completions`` read) that also carries its chat form (``.messages``: the instruction as the
system message, each example as a user/assistant turn, then the input), which
``/v1/chat/completions`` sends and the server formats with the served model's own chat template.

`FINE_TUNED` is the set the training examples use (no examples; byte-for-byte the prompts models
trained with `knowledge-qa train` know). `knowledge_qa.few_shot.FEW_SHOT` prompts models that were
never fine-tuned; `load_prompt_set` reads a JSON file overriding any task of either.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from knowledge_qa.corpus import Passage
from knowledge_qa.errors import QAInputError
from knowledge_qa.state import Action

# The option text of each action; the core model is scored on these continuations.
ACTION_OPTIONS: dict[Action, str] = {
    Action.ADD_DECOMP: "decompose",
    Action.RETRIEVE_EXTRACT: "retrieve",
    Action.SELF_ANSWER: "self answer",
    Action.FINAL_ANSWER: "final answer",
}
YES_NO_OPTIONS = ("yes", "no")
PROMPT_TASKS = ("action", "decompose", "self_answer", "extract", "final_answer")


class Prompt(str):
    """A prompt in its completion form (the ``str`` itself) with its chat form in ``messages``
    (``[{"role": ..., "content": ...}]``). Anything that takes a ``str`` takes a Prompt."""

    messages: list[dict[str, str]]

    def __new__(cls, text: str, messages: Sequence[Mapping[str, str]] | None = None) -> Prompt:
        prompt = super().__new__(cls, text)
        prompt.messages = [dict(m) for m in messages] if messages is not None else [{"role": "user", "content": text}]
        return prompt


def chat_messages(prompt: str) -> list[dict[str, str]]:
    """The chat form of ``prompt``: its own for a `Prompt`, else the text as one user message."""
    return list(getattr(prompt, "messages", None) or [{"role": "user", "content": str(prompt)}])


@dataclass(frozen=True)
class PromptTemplate:
    """How one task is asked. Completion form, without examples: ``instruction``, the input, the
    ``cue``, one per line. With examples, blocks separated by a blank line: the instruction, each
    example as ``input / cue output``, then the input and the cue. ``stop``: where a generated
    answer ends (every answer the agent reads is one line)."""

    instruction: str = ""
    cue: str = ""
    examples: tuple[tuple[str, str], ...] = ()
    stop: tuple[str, ...] = ("\n",)

    def render(self, text: str) -> Prompt:
        asked = f"{text}\n{self.cue}" if self.cue else text
        shown = [f"{given}\n{self.cue} {answer}" if self.cue else f"{given}\n{answer}" for given, answer in self.examples]
        blocks = [block for block in (self.instruction, *shown, asked) if block]
        completion = ("\n\n" if self.examples else "\n").join(blocks)
        messages = [{"role": "system", "content": self.instruction}] if self.instruction else []
        for given, answer in self.examples:
            messages += [{"role": "user", "content": f"{given}\n{self.cue}" if self.cue else given},
                         {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": asked})
        return Prompt(completion, messages)


@dataclass(frozen=True)
class PromptSet:
    """A `PromptTemplate` for every task of `PROMPT_TASKS`."""

    name: str
    templates: Mapping[str, PromptTemplate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [task for task in PROMPT_TASKS if task not in self.templates]
        if missing:
            raise ValueError(f"prompt set {self.name!r} has no template for {', '.join(missing)}")

    def __getitem__(self, task: str) -> PromptTemplate:
        return self.templates[task]


FINE_TUNED = PromptSet(
    "fine-tuned",
    {
        "action": PromptTemplate(cue="Next action:"),
        "decompose": PromptTemplate("Write the remaining sub-questions with guessed answers.", "Plan:"),
        "self_answer": PromptTemplate("Answer the last sub-question briefly.", "Answer:"),
        "extract": PromptTemplate("Extract a short fact that answers the question.", "Fact:"),
        "final_answer": PromptTemplate("Answer the question with yes or no.", "Final answer:"),
    },
)


def load_prompt_set(path: str | Path, base: PromptSet = FINE_TUNED) -> PromptSet:
    """``base`` with the tasks a JSON file names replaced, field by field: ``{"decompose":
    {"instruction": str, "cue": str, "examples": [[input, output], ...], "stop": [str, ...]}, ...}``.
    QAInputError (file and what was expected) for anything else."""
    path = Path(path)
    if not path.is_file():
        raise QAInputError("prompt file not found", path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise QAInputError(f"not valid JSON: {error.msg}", path, error.lineno) from None
    if not isinstance(data, dict):
        raise QAInputError("expected a JSON object mapping tasks to templates", path)
    templates = dict(base.templates)
    for task, fields in data.items():
        if task not in PROMPT_TASKS:
            raise QAInputError(f"unknown task {task!r}; tasks: {', '.join(PROMPT_TASKS)}", path)
        if not isinstance(fields, dict) or set(fields) - {"instruction", "cue", "examples", "stop"}:
            raise QAInputError(f"{task}: expected an object with instruction, cue, examples, stop", path)
        changes = {}
        for name in ("instruction", "cue"):
            if name in fields:
                if not isinstance(fields[name], str):
                    raise QAInputError(f"{task}.{name} must be a string", path)
                changes[name] = fields[name]
        if "examples" in fields:
            examples = fields["examples"]
            if not isinstance(examples, list) or not all(
                isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e) for e in examples
            ):
                raise QAInputError(f"{task}.examples must be a list of [input, output] string pairs", path)
            changes["examples"] = tuple((given, answer) for given, answer in examples)
        if "stop" in fields:
            if not isinstance(fields["stop"], list) or not all(isinstance(x, str) and x for x in fields["stop"]):
                raise QAInputError(f"{task}.stop must be a list of non-empty strings", path)
            changes["stop"] = tuple(fields["stop"])
        templates[task] = replace(templates[task], **changes)
    return PromptSet(f"{base.name} + {path.name}", templates)


def prompt_set_to_json(prompts: PromptSet) -> str:
    """The JSON form `load_prompt_set` reads (a starting point for a file of one's own)."""
    return json.dumps(
        {task: {"instruction": t.instruction, "cue": t.cue, "examples": [list(e) for e in t.examples], "stop": list(t.stop)}
         for task, t in prompts.templates.items()},
        indent=1, ensure_ascii=False,
    )


def render_state(question: str, answered: Sequence[tuple[str, str]], open_sub_question: str | None = None) -> str:
    """The question state as the core model reads it."""
    lines = [f"Question: {question}"]
    for number, (sub_question, answer) in enumerate(answered, start=1):
        lines.append(f"Q{number}: {sub_question}")
        lines.append(f"A{number}: {answer}")
    if open_sub_question is not None:
        lines.append(f"Q{len(answered) + 1}: {open_sub_question}")
    return "\n".join(lines)


def extract_input(sub_question: str, hint: str, passages: Sequence[Passage], max_passage_chars: int = 600) -> str:
    """RetrieveExtract's input: the sub-question, the pseudo-answer ``hint`` (which aspect to
    extract; left out when empty) and the passages."""
    context = "\n".join(f"[{p.title}] {p.text[:max_passage_chars]}" for p in passages)
    hint_line = f"\nHint: {hint}" if hint else ""
    return f"Question: {sub_question}{hint_line}\nPassages:\n{context}"


def action_prompt(state_text: str, prompts: PromptSet = FINE_TUNED) -> Prompt:
    """Which action next? Scored over `ACTION_OPTIONS` (only those allowed in the state)."""
    return prompts["action"].render(state_text)


def decompose_prompt(state_text: str, prompts: PromptSet = FINE_TUNED) -> Prompt:
    """AddDecomp: write the remaining sub-questions, each with a guessed (pseudo-)answer."""
    return prompts["decompose"].render(state_text)


def self_answer_prompt(state_text: str, prompts: PromptSet = FINE_TUNED) -> Prompt:
    """SelfAnswer: answer the open (last) sub-question from the model's own knowledge."""
    return prompts["self_answer"].render(state_text)


def extract_prompt(sub_question: str, hint: str, passages: Sequence[Passage], prompts: PromptSet = FINE_TUNED) -> Prompt:
    """RetrieveExtract: write one short fact answering ``sub_question`` from the passages."""
    return prompts["extract"].render(extract_input(sub_question, hint, passages))


def final_answer_prompt(state_text: str, prompts: PromptSet = FINE_TUNED) -> Prompt:
    """FinalAnswer: yes or no, scored over `YES_NO_OPTIONS`."""
    return prompts["final_answer"].render(state_text)


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
