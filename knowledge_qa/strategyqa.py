"""StrategyQA questions: reading and validating question files, and what the annotations say per step.

A record (see ``shared/data/strategyqa/SOURCE.md``) has ``qid``, ``question``, ``answer`` and, in the
annotated splits, ``decomposition`` (sub-questions, ``#k`` = the answer of step k), ``facts`` and
``evidence``: per annotator → per step → items, each item a list of paragraph ids
(``"<title>-<n>"``) or the string ``"operation"`` / ``"no_evidence"``.

Question files are either a JSON list of records (the StrategyQA files) or JSONL (one record per
line; what `write_questions_jsonl` writes). The kind is detected from the content, not the file name,
so a ``.json`` file holding JSONL still reads.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from knowledge_qa.errors import QAInputError
from nagner.common.jsonl import iter_json_records, write_jsonl
from nagner.common.textfile import read_text

_ANSWER_STRINGS = {"yes": True, "true": True, "no": False, "false": False}


@dataclass
class StrategyQuestion:
    """One implicit yes/no question with its (optional) annotations. ``answer`` is None when the
    split has no gold answer (the official test set)."""

    qid: str
    question: str
    answer: bool | None
    decomposition: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    evidence: list = field(default_factory=list)
    term: str = ""
    description: str = ""


def question_id(question: str) -> str:
    """A stable id for a question without one: 20 hex digits (the length of StrategyQA qids) of the
    SHA-1 of its whitespace-normalised text, so the same question gets the same id in every run."""
    normalised = " ".join(question.split()).lower()
    return hashlib.sha1(normalised.encode("utf-8")).hexdigest()[:20]


def read_questions(path: str | Path) -> list[StrategyQuestion]:
    """Every question of a JSON-list or JSONL question file, in file order.

    Raises QAInputError naming the file and the line (of the record, in a JSON list: where it
    starts) for anything malformed: not JSON, a record that is not
    an object, a missing, non-string or empty ``question``, an ``answer`` that is not a bool, null or
    one of the strings yes/no/true/false, a ``decomposition`` or ``facts`` that is not a list of
    strings, and duplicate qids. A missing qid becomes `question_id` of the question text.
    """
    path = Path(path)
    if not path.is_file():
        raise QAInputError("question file not found", path)
    questions: list[StrategyQuestion] = []
    seen: dict[str, int] = {}
    for line, record in iter_json_records(path):
        question = _parse_record(record, path, line)
        if question.qid in seen:
            raise QAInputError(f"duplicate qid {question.qid!r} (first at line {seen[question.qid]})", path, line)
        seen[question.qid] = line
        questions.append(question)
    if not questions:
        empty = not read_text(path).strip()
        raise QAInputError("the question file is empty" if empty else "the question file holds no questions", path)
    return questions


def _parse_record(record: Any, path: Path, line: int) -> StrategyQuestion:
    def fail(message: str) -> QAInputError:
        return QAInputError(message, path, line)

    if not isinstance(record, dict):
        raise fail(f"expected a question object, found {type(record).__name__}")
    if "question" not in record:
        raise fail("record has no 'question' field")
    question = record["question"]
    if not isinstance(question, str):
        raise fail(f"'question' must be a string, found {type(question).__name__}")
    question = question.strip()
    if not question:
        raise fail("'question' is empty")
    answer = _parse_answer(record.get("answer"), fail)
    lists = {}
    for name in ("decomposition", "facts"):
        value = record.get(name)
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise fail(f"{name!r} must be a list of strings")
        lists[name] = value
    evidence = record.get("evidence")
    if evidence is None:
        evidence = []
    if not isinstance(evidence, list):
        raise fail(f"'evidence' must be a list (annotator → step → items), found {type(evidence).__name__}")
    qid = record.get("qid")
    if qid is None or qid == "":
        qid = question_id(question)
    elif isinstance(qid, int) and not isinstance(qid, bool):
        qid = str(qid)  # numeric ids in hand-made files are harmless
    elif not isinstance(qid, str):
        raise fail(f"'qid' must be a string, found {type(qid).__name__}")
    texts = {}
    for name in ("term", "description"):
        value = record.get(name) or ""
        if not isinstance(value, str):
            raise fail(f"{name!r} must be a string, found {type(value).__name__}")
        texts[name] = value
    return StrategyQuestion(qid, question, answer, lists["decomposition"], lists["facts"], evidence, **texts)


def _parse_answer(value: Any, fail) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _ANSWER_STRINGS:
        return _ANSWER_STRINGS[value.strip().lower()]
    raise fail(f'\'answer\' must be true/false, "yes"/"no" or null, found {value!r}')


def write_questions_jsonl(questions: Iterable[StrategyQuestion], path: str | Path) -> int:
    """Write questions as JSONL that `read_questions` reads back unchanged (atomically: the file
    appears whole or not at all); returns the count."""
    return write_jsonl((asdict(question) for question in questions), path)


# ------------------------------------------------------------------------- annotations per step
def _step_items(annotation: Any, step: int) -> list:
    """The evidence items of one annotator for one step; tolerant of short or odd annotations,
    because hand-made files may annotate fewer steps than they decompose into."""
    if not isinstance(annotation, list) or step >= len(annotation):
        return []
    items = annotation[step]
    return items if isinstance(items, list) else [items]


def _paragraph_ids(items: list) -> list[str]:
    return [pid for item in items if isinstance(item, list) for pid in item if isinstance(pid, str)]


def step_kinds(question: StrategyQuestion) -> list[str]:
    """Per decomposition step, "retrieve" when at least half of the annotators cite paragraph ids for
    it (a tie counts as retrieve: some annotator found the knowledge in Wikipedia) and "reason"
    otherwise ("operation" / "no_evidence" only). A step no annotator covers is "reason"."""
    kinds = []
    for step in range(len(question.decomposition)):
        # Annotators with nothing for this step abstain rather than vote "reason".
        covering = [items for items in (_step_items(a, step) for a in question.evidence) if items]
        votes = [bool(_paragraph_ids(items)) for items in covering]
        citing = sum(votes)
        kinds.append("retrieve" if votes and 2 * citing >= len(votes) else "reason")
    return kinds


def step_evidence_ids(question: StrategyQuestion) -> list[set[str]]:
    """Per decomposition step, the paragraph ids any annotator cited for it."""
    return [
        {pid for annotation in question.evidence for pid in _paragraph_ids(_step_items(annotation, step))}
        for step in range(len(question.decomposition))
    ]


def evidence_ids(question: StrategyQuestion) -> set[str]:
    """Every paragraph id cited anywhere in the question's evidence (also steps beyond the
    decomposition, should an annotator have more)."""
    return set(citation_counts(question))


def citation_counts(question: StrategyQuestion) -> Counter[str]:
    """How many (annotator, step) pairs cite each paragraph id: a measure of how central a passage is."""
    counts: Counter[str] = Counter()
    for annotation in question.evidence:
        if isinstance(annotation, list):
            for step in range(len(annotation)):
                counts.update(set(_paragraph_ids(_step_items(annotation, step))))
    return counts


def majority_answer(questions: Sequence[StrategyQuestion]) -> bool:
    """The more frequent gold answer (the majority-class baseline); a tie gives False, the majority
    class of StrategyQA. Questions without an answer are ignored; if none has one, ValueError."""
    golds = [q.answer for q in questions if q.answer is not None]
    if not golds:
        raise ValueError("no question has a gold answer")
    return 2 * sum(golds) > len(golds)
