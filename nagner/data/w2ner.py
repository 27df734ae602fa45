"""W2NER JSON: ``{"sentence": [words], "ner": [{"index": [word indices], "type": T}]}`` records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nagner.data.example import Entity, Sentence
from nagner.data.textfile import read_text
from nagner.errors import NagNerInputError


def _array_records(text: str, path: str) -> Iterator[tuple[int, Any]]:
    """``(line, record)`` for each element of a JSON array, decoded one element at a time so that
    every record knows the line it starts on."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line = text.count("\n", 0, pos) + 1

    def skip_space(pos: int, line: int) -> tuple[int, int]:
        while pos < len(text) and text[pos] in " \t\r\n\ufeff":
            line += text[pos] == "\n"
            pos += 1
        return pos, line

    pos, line = skip_space(pos, line)
    if text.startswith("]", pos):
        return
    while True:
        try:
            record, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as error:
            raise NagNerInputError(f"bad JSON: {error.msg} (column {error.colno})", path, error.lineno) from None
        yield line, record
        line += text.count("\n", pos, end)
        pos, line = skip_space(end, line)
        if text.startswith("]", pos):
            return
        if not text.startswith(",", pos):
            raise NagNerInputError("bad JSON: expected ',' or ']' after a record", path, line)
        pos, line = skip_space(pos + 1, line)


def _jsonl_records(text: str, path: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise NagNerInputError(f"bad JSON: {error.msg} (column {error.colno})", path, number) from None


def _sentence(record: Any, path: str, line: int) -> Sentence:
    def fail(message: str) -> NagNerInputError:
        return NagNerInputError(message, path, line)

    if not isinstance(record, dict):
        raise fail(f"expected a JSON object with 'sentence' and 'ner', found {type(record).__name__}")
    words = record.get("sentence")
    if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
        raise fail("'sentence' must be a list of word strings")
    mentions = record.get("ner", [])
    if not isinstance(mentions, list):
        raise fail("'ner' must be a list of {'index': [...], 'type': ...} objects")
    entities: list[Entity] = []
    for k, mention in enumerate(mentions):
        where = f"'ner' item {k}"
        if not isinstance(mention, dict):
            raise fail(f"{where} must be an object with 'index' and 'type'")
        type_, index = mention.get("type"), mention.get("index")
        if not isinstance(type_, str) or not type_:
            raise fail(f"{where}: 'type' must be a non-empty string")
        if not isinstance(index, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in index):
            raise fail(f"{where}: 'index' must be a list of integers")
        if not index:
            raise fail(f"{where}: 'index' is empty")
        bad = [i for i in index if not 0 <= i < len(words)]
        if bad:
            raise fail(f"{where}: index {bad[0]} is out of range for a sentence of {len(words)} words")
        entity = Entity(type_, tuple(sorted(set(index))))
        if entity not in entities:
            entities.append(entity)
    return Sentence(words=words, entities=entities, source=path, line=line)


def iter_w2ner(path: str | Path) -> Iterator[Sentence]:
    """Sentences of a W2NER file: a JSON array of records, or JSON lines (one record a line).

    ``index`` lists may be unsorted (they are sorted); gaps make an entity discontinuous.
    Records without ``ner`` have no entities. Raises NagNerInputError with the line of the
    offending record for bad JSON, missing or ill-typed keys, empty or out-of-range indices.
    """
    source = str(path)
    text = read_text(path)
    start = text.lstrip(" \t\r\n\ufeff")[:1]
    records = _array_records(text, source) if start == "[" else _jsonl_records(text, source)
    for line, record in records:
        yield _sentence(record, source, line)


def read_w2ner(path: str | Path) -> list[Sentence]:
    """All sentences of a W2NER file (see :func:`iter_w2ner`); raises NagNerInputError when empty."""
    sentences = list(iter_w2ner(path))
    if not sentences:
        raise NagNerInputError("no sentences found (empty file?)", path)
    return sentences


def w2ner_record(sentence: Sentence) -> dict[str, Any]:
    """The W2NER record of a sentence."""
    return {
        "sentence": list(sentence.words),
        "ner": [{"index": list(entity.indices), "type": entity.type} for entity in sentence.entities],
    }


def write_w2ner(sentences: list[Sentence], path: str | Path) -> None:
    """Write W2NER records: JSON lines when ``path`` ends in ``.jsonl``, else a JSON array with
    one record per line."""
    records = [json.dumps(w2ner_record(sentence), ensure_ascii=False) for sentence in sentences]
    if str(path).endswith(".jsonl"):
        text = "".join(record + "\n" for record in records)
    else:
        text = "[\n" + ",\n".join(records) + "\n]\n" if records else "[]\n"
    Path(path).write_text(text, encoding="utf-8")
