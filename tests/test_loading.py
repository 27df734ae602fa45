import json

import pytest

from nagner.data.example import Entity
from nagner.data.loading import detect_format, read_sentences
from nagner.errors import NagNerInputError


@pytest.fixture
def files(tmp_path):
    conll = tmp_path / "a.txt"
    conll.write_text("Bob B-PER\n")
    w2ner_array = tmp_path / "b.json"
    w2ner_array.write_text('[\n{"sentence": ["Bob"], "ner": [{"index": [0], "type": "PER"}]}\n]')
    w2ner_lines = tmp_path / "c.jsonl"
    w2ner_lines.write_text('{"sentence": ["Bob"], "ner": [{"index": [0], "type": "PER"}]}\n')
    ours = tmp_path / "d.jsonl"
    ours.write_text('\n{"text": "Bob", "entities": [{"type": "PER", "spans": [[0, 3]]}]}\n')
    ours_json = tmp_path / "e.json"
    ours_json.write_text(ours.read_text())
    return {"conll": conll, "w2ner": w2ner_array, "w2ner2": w2ner_lines, "jsonl": ours, "jsonl2": ours_json}


def test_auto_detects_every_format(files):
    for key, path in files.items():
        assert detect_format(path) == key.rstrip("2")
        sentences = read_sentences(path)
        assert [(s.words, s.entities) for s in sentences] == [(["Bob"], [Entity("PER", (0,))])]


def test_explicit_format_and_kwargs(files, tmp_path):
    assert read_sentences(files["conll"], format="conll", scheme="iob2")[0].entities == [Entity("PER", (0,))]
    with pytest.raises(NagNerInputError, match="unknown format 'xml'"):
        read_sentences(files["conll"], format="xml")


def test_missing_file_and_unsniffable(tmp_path):
    with pytest.raises(NagNerInputError, match="no such file") as info:
        read_sentences(tmp_path / "nope.conll")
    assert info.value.path == str(tmp_path / "nope.conll")
    with pytest.raises(NagNerInputError, match="not a file"):
        read_sentences(tmp_path)
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"tokens": ["a"]}) + "\n")
    with pytest.raises(NagNerInputError, match="neither 'sentence'") as info:
        read_sentences(odd)
    assert info.value.line == 1
    bad = tmp_path / "bad.json"
    bad.write_text("\n{oops\n")
    with pytest.raises(NagNerInputError, match="bad JSON") as info:
        read_sentences(bad)
    assert info.value.line == 2
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(NagNerInputError, match="no records"):
        read_sentences(empty)
