"""Our JSON lines format: ``{"text": ..., "entities": [{"type": T, "spans": [[start, end], ...]}]}``.

Spans are character offsets ``[start, end)`` into ``text``; several spans make one
discontinuous entity. Words come from :func:`nagner.data.text.tokenize`, split at span edges.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nagner.common.jsonl import iter_json_lines
from nagner.common.jsonl import write_jsonl as write_records
from nagner.data.example import Entity, Sentence
from nagner.data.text import DEFAULT_LANGUAGE, sentence_from_char_entities, with_offsets
from nagner.errors import NagNerInputError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sentence(record: Any, path: str, line: int, language: str) -> Sentence:
    def fail(message: str) -> NagNerInputError:
        return NagNerInputError(message, path, line)

    if not isinstance(record, dict):
        raise fail(f"expected a JSON object with 'text' and 'entities', found {type(record).__name__}")
    text = record.get("text")
    if not isinstance(text, str):
        raise fail("missing 'text' (a string)" if text is None else "'text' must be a string")
    raw_entities = record.get("entities", [])
    if not isinstance(raw_entities, list):
        raise fail("'entities' must be a list of {'type': ..., 'spans': [[start, end], ...]} objects")
    entities: list[tuple[str, list[tuple[int, int]], float | None]] = []
    for k, raw in enumerate(raw_entities):
        where = f"entity {k}"
        if not isinstance(raw, dict):
            raise fail(f"{where} must be an object with 'type' and 'spans'")
        type_, spans, score = raw.get("type"), raw.get("spans"), raw.get("score")
        if not isinstance(type_, str) or not type_:
            raise fail(f"{where}: 'type' must be a non-empty string")
        if not isinstance(spans, list) or not spans:
            raise fail(f"{where}: 'spans' must be a non-empty list of [start, end] pairs")
        for span in spans:
            if not (isinstance(span, list) and len(span) == 2 and all(_is_int(x) for x in span)):
                raise fail(f"{where}: span {span!r} must be a pair of integers [start, end]")
        if score is not None and (not isinstance(score, (int, float)) or isinstance(score, bool)):
            raise fail(f"{where}: 'score' must be a number")
        entities.append((type_, [(s, e) for s, e in spans], score))
    try:
        sentence = sentence_from_char_entities(text, entities, language=language)
    except ValueError as error:
        raise fail(str(error)) from None
    sentence.source, sentence.line = path, line
    return sentence


def iter_jsonl(path: str | Path, language: str = DEFAULT_LANGUAGE) -> Iterator[Sentence]:
    """Sentences of a JSON lines file in our format, read lazily; blank lines are skipped.
    ``language`` picks the tokenizer's rules (see :mod:`nagner.data.text`).

    Raises NagNerInputError with the line for bad JSON, a missing ``text``, ill-typed entities,
    spans outside the text or with ``start >= end``, and for a file without records.
    """
    source = str(path)
    found = False
    for number, record in iter_json_lines(path):
        found = True
        yield _sentence(record, source, number, language)
    if not found:
        raise NagNerInputError("no records found (empty file?)", source)


def read_jsonl(path: str | Path, language: str = DEFAULT_LANGUAGE) -> list[Sentence]:
    """All sentences of a JSON lines file in our format; see :func:`iter_jsonl`."""
    return list(iter_jsonl(path, language))


def entity_record(sentence: Sentence, entity: Entity) -> dict[str, Any]:
    """``{"type", "text", "spans", "score"}`` of an entity (``score`` only when known).

    A sentence without text or offsets is given them first (see :func:`with_offsets`).
    """
    sentence = with_offsets(sentence)
    record: dict[str, Any] = {
        "type": entity.type,
        "text": sentence.entity_text(entity),
        "spans": [[start, end] for start, end in sentence.char_spans(entity)],
    }
    if entity.score is not None:
        record["score"] = entity.score
    return record


def sentence_record(sentence: Sentence) -> dict[str, Any]:
    """``{"text", "entities"}`` of a sentence, the line :func:`write_jsonl` writes, with
    ``"sentences"`` (character ``[start, end)`` of each sentence) when the text was split."""
    sentence = with_offsets(sentence)
    record: dict[str, Any] = {
        "text": sentence.text,
        "entities": [entity_record(sentence, entity) for entity in sentence.entities],
    }
    if sentence.sentence_spans is not None:
        record["sentences"] = [[start, end] for start, end in sentence.sentence_spans]
    return record


def write_jsonl(sentences: Iterable[Sentence], path: str | Path) -> int:
    """Write one :func:`sentence_record` per line (UTF-8, non-ASCII kept as is), atomically (see
    `nagner.common.jsonl.write_jsonl`); returns the count."""
    return write_records((sentence_record(sentence) for sentence in sentences), path)
