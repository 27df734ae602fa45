import json
from pathlib import Path

import pytest

from nagner.data.example import Entity, Sentence
from nagner.data.w2ner import iter_w2ner, read_w2ner, write_w2ner
from nagner.errors import NagNerInputError

CADEC = Path("/work/shared/data/cadec/test.json")

RECORDS = [
    {"sentence": ["pain", "in", "left", "and", "right", "knee"],
     "ner": [{"index": [5, 0, 1, 2], "type": "ADR"}, {"index": [0, 1, 4, 5], "type": "ADR"}]},
    {"sentence": ["fine", "."], "ner": []},
]


def test_json_array_with_unsorted_index(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in RECORDS) + "\n]\n")
    first, second = read_w2ner(path)
    assert first.words == RECORDS[0]["sentence"]
    assert first.entities == [Entity("ADR", (0, 1, 2, 5)), Entity("ADR", (0, 1, 4, 5))]
    assert all(e.is_discontinuous for e in first.entities)
    assert second.entities == []
    assert [(s.source, s.line) for s in (first, second)] == [(str(path), 2), (str(path), 3)]


def test_jsonl_and_missing_ner(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n\n" + json.dumps({"sentence": ["x"]}) + "\n")
    sentences = list(iter_w2ner(path))
    assert [s.line for s in sentences] == [1, 3]
    assert sentences[1].entities == []


@pytest.mark.parametrize("text, line, message", [
    ('{"sentence": ["a"], "ner": []}\n{"sentence": ["a"\n', 2, "bad JSON"),
    ('[\n{"sentence": ["a"], "ner": []},\n{"sentence": ["a"] "ner": []}\n]', 3, "bad JSON"),
    ('[\n{"sentence": ["a"], "ner": []}\n{"sentence": ["b"]}\n]', 3, "expected ','"),
    ('{"words": ["a"]}\n', 1, "'sentence'"),
    ('{"sentence": "a b"}\n', 1, "'sentence'"),
    ('{"sentence": ["a"], "ner": [{"index": [1], "type": "X"}]}\n', 1, "out of range"),
    ('{"sentence": ["a"], "ner": [{"index": [], "type": "X"}]}\n', 1, "empty"),
    ('{"sentence": ["a"], "ner": [{"index": [0]}]}\n', 1, "'type'"),
    ('{"sentence": ["a"], "ner": [{"index": ["0"], "type": "X"}]}\n', 1, "integers"),
    ('{"sentence": ["a"], "ner": {"index": [0]}}\n', 1, "'ner'"),
    ('[1]', 1, "JSON object"),
    ("", None, "no sentences"),
    ("[]", None, "no sentences"),
])
def test_errors(tmp_path, text, line, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(NagNerInputError, match=message) as info:
        read_w2ner(path)
    assert info.value.path == str(path)
    assert info.value.line == line


@pytest.mark.parametrize("name", ["out.json", "out.jsonl"])
def test_write_round_trip(tmp_path, name):
    sentences = [
        Sentence(["pain", "in", "left", "and", "right", "knee"], [Entity("ADR", (0, 1, 2, 5))]),
        Sentence(["Café", "."]),
    ]
    path = tmp_path / name
    write_w2ner(sentences, path)
    assert "Café" in path.read_text(encoding="utf-8")
    back = read_w2ner(path)
    assert [(s.words, s.entities) for s in back] == [(s.words, s.entities) for s in sentences]


@pytest.mark.skipif(not CADEC.exists(), reason="CADEC not available")
def test_real_cadec():
    sentences = read_w2ner(CADEC)
    entities = [e for s in sentences for e in s.entities]
    assert len(sentences) == 1160
    assert len(entities) == 990
    assert sum(e.is_discontinuous for e in entities) == 94
