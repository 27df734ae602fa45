"""The knowledge source: any JSONL file of passages ``{"id", "title", "text"}``, one per line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from knowledge_qa.errors import QAInputError
from nagner.common.jsonl import iter_json_lines, write_jsonl


@dataclass(frozen=True)
class Passage:
    """One retrievable unit of knowledge. ``title`` names its document (two-level search groups
    passages by title)."""

    id: str
    title: str
    text: str


def read_corpus(path: str | Path) -> list[Passage]:
    """All passages of a JSONL corpus, in file order.

    Every non-blank line must be an object with string fields ``id``, ``title`` (may be empty)
    and a non-empty ``text``; ids must be unique. Anything else raises QAInputError naming the file
    and line. An empty corpus is an error too: there is nothing to retrieve from.
    """
    path = Path(path)
    if not path.is_file():
        raise QAInputError("corpus file not found", path)
    passages: list[Passage] = []
    seen: dict[str, int] = {}
    for line_number, record in iter_json_lines(path):
        if not isinstance(record, dict):
            raise QAInputError(f"expected a JSON object {{id, title, text}}, found {type(record).__name__}", path, line_number)
        for field in ("id", "text"):
            if field not in record:
                raise QAInputError(f"passage has no {field!r} field (expected id, title, text)", path, line_number)
        values = {field: record.get(field, "") for field in ("id", "title", "text")}
        if isinstance(values["id"], int) and not isinstance(values["id"], bool):
            values["id"] = str(values["id"])
        for field, value in values.items():
            if not isinstance(value, str):
                raise QAInputError(f"field {field!r} must be a string, found {type(value).__name__}", path, line_number)
        if not values["text"].strip():
            raise QAInputError(f"passage {values['id']!r} has an empty text", path, line_number)
        if values["id"] in seen:
            raise QAInputError(f"duplicate passage id {values['id']!r} (first on line {seen[values['id']]})", path, line_number)
        seen[values["id"]] = line_number
        passages.append(Passage(**values))
    if not passages:
        raise QAInputError("the corpus is empty; expected at least one passage {id, title, text}", path)
    return passages


def write_corpus(passages: Iterable[Passage], path: str | Path) -> int:
    """Write passages as JSONL (atomically: the file appears whole or not at all); returns the count."""
    return write_jsonl((asdict(passage) for passage in passages), path)


def iter_titles(passages: Iterable[Passage]) -> Iterator[tuple[str, list[Passage]]]:
    """(title, passages of that title) in order of first appearance: the documents of two-level search."""
    groups: dict[str, list[Passage]] = {}
    for passage in passages:
        groups.setdefault(passage.title, []).append(passage)
    yield from groups.items()
