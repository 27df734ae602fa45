import importlib.util
from collections import Counter
from pathlib import Path

import pytest

from nagner.data import entity_kind, read_sentences

DATA = Path(__file__).resolve().parent.parent / "data"
FILES = ["sample_flat.conll", "sample_nested.iob2", "sample_discontinuous.json", "sample.jsonl"]


def kinds(sentences):
    return Counter(entity_kind(e, s.entities) for s in sentences for e in s.entities)


def types(sentences):
    return {e.type for s in sentences for e in s.entities}


def test_flat_sample():
    sentences = read_sentences(DATA / "sample_flat.conll")
    assert len(sentences) == 300
    assert types(sentences) == {"PER", "LOC", "ORG", "MISC"}
    assert set(kinds(sentences)) == {"flat"}
    assert all(len(line.split()) == 4 for line in (DATA / "sample_flat.conll").read_text().splitlines() if line)


def test_nested_sample():
    sentences = read_sentences(DATA / "sample_nested.iob2")
    assert len(sentences) == 300
    assert types(sentences) == {"PER", "LOC", "ORG"}
    counts = kinds(sentences)
    assert counts["nested"] >= 100 and counts["discontinuous"] == 0
    inner = read_sentences(DATA / "sample_nested.iob2", tag_columns=[2])
    assert sum(len(s.entities) for s in inner) >= 50


def test_discontinuous_sample():
    sentences = read_sentences(DATA / "sample_discontinuous.json")
    assert len(sentences) == 300
    assert types(sentences) == {"ADR"}
    counts = kinds(sentences)
    assert counts["discontinuous"] >= 100 and counts["flat"] >= 50 and counts["nested"] >= 50


def test_jsonl_sample_mixes_all_kinds():
    sentences = read_sentences(DATA / "sample.jsonl")
    assert len(sentences) == 50
    assert types(sentences) == {"PER", "LOC", "ORG", "MISC", "ADR"}
    assert set(kinds(sentences)) == {"flat", "nested", "discontinuous"}


@pytest.mark.parametrize("name", FILES)
def test_samples_are_what_the_script_writes(tmp_path, name):
    spec = importlib.util.spec_from_file_location("make_samples", DATA / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes()
