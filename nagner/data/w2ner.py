"""W2NER JSON: ``{"sentence": [words], "ner": [{"index": [word indices], "type": T}]}`` records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nagner.common.atomic import atomic_outputs
from nagner.common.jsonl import iter_json_records, write_jsonl
from nagner.data.example import Entity, Sentence
from nagner.errors import NagNerInputError


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
    for line, record in iter_json_records(path):
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
    one record per line (atomically: the file appears whole or not at all)."""
    if str(path).endswith(".jsonl"):
        write_jsonl((w2ner_record(sentence) for sentence in sentences), path)
        return
    records = [json.dumps(w2ner_record(sentence), ensure_ascii=False) for sentence in sentences]
    with atomic_outputs([path]) as (out,):
        out.write("[\n" + ",\n".join(records) + "\n]\n" if records else "[]\n")
