import json

import pytest

from nagner.data.example import Entity, Sentence
from nagner.data.jsonl import entity_record, iter_jsonl, read_jsonl, write_jsonl
from nagner.data.text import sentence_from_text
from nagner.errors import NagNerInputError


def test_read_aligns_spans_to_words(tmp_path):
    path = tmp_path / "a.jsonl"
    records = [
        {"text": "Ann Lee visited Paris-Nord.", "entities": [
            {"type": "PER", "spans": [[0, 7]]}, {"type": "LOC", "spans": [[16, 21]]}]},
        {"text": "pain in left and right knee", "entities": [
            {"type": "ADR", "spans": [[0, 12], [23, 27]], "score": 0.9}]},
        {"text": "   "},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records[:2]) + "\n\n" + json.dumps(records[2]) + "\n")
    first, second, blank = read_jsonl(path)
    assert first.words == ["Ann", "Lee", "visited", "Paris", "-Nord", "."]
    assert first.entities == [Entity("PER", (0, 1)), Entity("LOC", (3,))]
    assert second.entities == [Entity("ADR", (0, 1, 2, 5))]
    assert second.entities[0].score == 0.9
    assert blank.words == [] and blank.entities == []
    assert [(s.source, s.line) for s in (first, second, blank)] == [(str(path), 1), (str(path), 2), (str(path), 4)]


@pytest.mark.parametrize("line, message", [
    ('{"text": "a"', "bad JSON"),
    ('{"entities": []}', "missing 'text'"),
    ('{"text": 3}', "'text' must be a string"),
    ('["a"]', "JSON object"),
    ('{"text": "abc", "entities": [{"type": "X", "spans": [[0, 4]]}]}', "start < end <= 3"),
    ('{"text": "abc", "entities": [{"type": "X", "spans": [[2, 2]]}]}', "start < end"),
    ('{"text": "abc", "entities": [{"type": "X", "spans": [[-1, 2]]}]}', "0 <= start"),
    ('{"text": "abc", "entities": [{"type": "X", "spans": [[0, 1.5]]}]}', "pair of integers"),
    ('{"text": "abc", "entities": [{"type": "X", "spans": [[0, true]]}]}', "pair of integers"),
    ('{"text": "abc", "entities": [{"type": "X", "spans": []}]}', "non-empty list"),
    ('{"text": "abc", "entities": [{"spans": [[0, 1]]}]}', "'type'"),
    ('{"text": "a  b", "entities": [{"type": "X", "spans": [[1, 3]]}]}', "covers no word"),
])
def test_errors_name_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n")
    with pytest.raises(NagNerInputError, match=message) as info:
        read_jsonl(path)
    assert (info.value.path, info.value.line) == (str(path), 2)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n \n")
    with pytest.raises(NagNerInputError, match="no records"):
        list(iter_jsonl(path))


def test_entity_record():
    sentence = sentence_from_text("pain in left and right knee")
    gap = Entity("ADR", (0, 1, 2, 5), 0.25)
    assert entity_record(sentence, gap) == {
        "type": "ADR", "text": "pain in left … knee", "spans": [[0, 12], [23, 27]], "score": 0.25
    }
    plain = Sentence(["New", "York"], [Entity("LOC", (0, 1))])
    assert entity_record(plain, plain.entities[0]) == {"type": "LOC", "text": "New York", "spans": [[0, 8]]}


def test_round_trip(tmp_path):
    nested = sentence_from_text("The University of Paris hired Zoë O'Neil.")
    nested.entities = [Entity("ORG", (1, 2, 3)), Entity("LOC", (3,)), Entity("PER", (5, 6))]
    gap = sentence_from_text("pain in my left and right knee")
    gap.entities = [Entity("ADR", (0, 1, 2, 3, 6)), Entity("ADR", (0, 1, 2, 5, 6), score=0.5)]
    words_only = Sentence(["Bob", "met", "Ann"], [Entity("PER", (0,)), Entity("PER", (2,))])
    sentences = [nested, gap, words_only, sentence_from_text("")]
    path = tmp_path / "out.jsonl"
    write_jsonl(sentences, path)
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[2]) == {"text": "Bob met Ann", "entities": [
        {"type": "PER", "text": "Bob", "spans": [[0, 3]]}, {"type": "PER", "text": "Ann", "spans": [[8, 11]]}]}
    back = read_jsonl(path)
    assert [s.entities for s in back] == [s.entities for s in sentences]
    assert [s.words for s in back] == [s.words for s in sentences]
    assert back[1].entities[1].score == 0.5
