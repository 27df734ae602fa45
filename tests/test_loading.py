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


def test_hub_spec_is_parsed_into_name_config_split():
    from nagner.data.loading import parse_hub_spec

    assert parse_hub_spec("hf:conll2003:train") == ("conll2003", None, "train")
    assert parse_hub_spec("hf:eriktks/conll2003:conll2003:validation") == ("eriktks/conll2003", "conll2003", "validation")
    with pytest.raises(NagNerInputError, match="hf:NAME:SPLIT"):
        parse_hub_spec("hf:conll2003")


def test_hub_spec_goes_through_datasets(monkeypatch):
    """`read_sentences("hf:...")` calls datasets.load_dataset with the name, config and split."""
    import datasets

    calls = []

    def fake_load_dataset(name, config_name=None, split=None, **kwargs):
        calls.append((name, config_name, split))
        features = datasets.Features(
            {
                "tokens": datasets.Sequence(datasets.Value("string")),
                "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"])),
            }
        )
        return datasets.Dataset.from_dict({"tokens": [["Anna", "Berg", "ran"]], "ner_tags": [[1, 2, 0]]}, features=features)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (sentence,) = read_sentences("hf:someone/ner-set:train")
    assert calls == [("someone/ner-set", None, "train")]
    assert sentence.words == ["Anna", "Berg", "ran"]
    assert [(e.type, e.indices) for e in sentence.entities] == [("PER", (0, 1))]
