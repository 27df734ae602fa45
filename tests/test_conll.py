from pathlib import Path

import pytest

from nagner.data.conll import iter_conll, read_conll, write_conll
from nagner.data.example import Entity, Sentence
from nagner.errors import NagNerInputError

SHARED = Path("/work/shared/data")


def write(tmp_path, text, name="data.conll"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_conll2003_layout_uses_last_column(tmp_path):
    path = write(tmp_path, (
        "\ufeff-DOCSTART- -X- -X- O\n\n"
        "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n"
        "\ufeff\n  \n"
        "Peter NNP B-NP I-PER\nBlackburn NNP I-NP I-PER\n"
    ))
    sentences = read_conll(path)
    assert [s.words for s in sentences] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert sentences[0].entities == [Entity("ORG", (0,)), Entity("MISC", (2,))]
    assert sentences[1].entities == [Entity("PER", (0, 1))]  # IOB1-style I- after nothing
    assert [(s.source, s.line) for s in sentences] == [(str(path), 3), (str(path), 9)]


def test_germeval_layout_unites_levels(tmp_path):
    path = write(tmp_path, (
        "FC\tB-ORG\tO\nKickers\tI-ORG\tO\nDarmstadt\tI-ORG\tB-LOC\n.\tO\tO\n\n"
        "Paris\tB-LOC\tB-LOC\n"
    ))
    first, second = read_conll(path)
    assert first.entities == [Entity("ORG", (0, 1, 2)), Entity("LOC", (2,))]
    assert second.entities == [Entity("LOC", (0,))]  # same span on both levels: once
    assert read_conll(path, tag_columns=[2])[0].entities == [Entity("LOC", (2,))]


def test_two_columns_and_bioes(tmp_path):
    path = write(tmp_path, "a B-X\nb E-X\nc S-Y\n")
    assert read_conll(path)[0].entities == [Entity("X", (0, 1)), Entity("Y", (2,))]


def test_iter_conll_is_lazy(tmp_path):
    path = write(tmp_path, "a O\n\nb O\nc O x\n")
    sentences = iter_conll(path)
    assert next(sentences).words == ["a"]
    with pytest.raises(NagNerInputError):
        next(sentences)


@pytest.mark.parametrize("text, line, message", [
    ("a O\nb O\n\nc O extra\n", 4, "expected 2 columns"),
    ("a O\nb B-PER\nc X-PER\n", 3, "'X-PER'"),
    ("", None, "no sentences"),
    ("\n\n-DOCSTART- O\n\n", None, "no sentences"),
    ("word\n", 1, "at least one tag column"),
])
def test_errors_name_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(NagNerInputError, match=message) as info:
        read_conll(path)
    assert info.value.path == str(path)
    assert info.value.line == line


def test_bad_tag_columns(tmp_path):
    path = write(tmp_path, "a O\n")
    with pytest.raises(NagNerInputError, match="tag columns"):
        read_conll(path, tag_columns=[3])


def test_write_then_read(tmp_path):
    sentences = [
        Sentence(["John", "lives", "in", "New", "York"], [Entity("PER", (0,)), Entity("LOC", (3, 4))]),
        Sentence(["Nothing"]),
    ]
    path = tmp_path / "out.conll"
    write_conll(sentences, path)
    assert path.read_text() == "John B-PER\nlives O\nin O\nNew B-LOC\nYork I-LOC\n\nNothing O\n\n"
    assert [s.entities for s in read_conll(path)] == [s.entities for s in sentences]
    write_conll(sentences, path, scheme="bioes")
    assert "York E-LOC" in path.read_text()
    assert [s.entities for s in read_conll(path)] == [s.entities for s in sentences]


def test_write_refuses_nested_and_discontinuous(tmp_path):
    nested = Sentence(["University", "of", "Paris"], [Entity("ORG", (0, 1, 2)), Entity("LOC", (2,))])
    with pytest.raises(NagNerInputError, match="sentence 2.*jsonl or brat"):
        write_conll([Sentence(["x"]), nested], tmp_path / "a.conll")
    gap = Sentence(["a", "b", "c"], [Entity("ADR", (0, 2))])
    with pytest.raises(NagNerInputError, match="sentence 1: discontinuous entity.*jsonl or brat"):
        write_conll([gap], tmp_path / "b.conll")


@pytest.mark.skipif(not (SHARED / "conll2003/eng.testb").exists(), reason="CoNLL-2003 not available")
def test_real_conll2003():
    sentences = read_conll(SHARED / "conll2003/eng.testb")
    assert len(sentences) == 3453
    assert sum(len(s.entities) for s in sentences) == 5648


@pytest.mark.skipif(not (SHARED / "germeval2014/germ.dev.iob2").exists(), reason="GermEval not available")
def test_real_germeval():
    path = SHARED / "germeval2014/germ.dev.iob2"
    assert sum(len(s.entities) for s in read_conll(path, tag_columns=[1])) == 2674
    assert sum(len(s.entities) for s in read_conll(path, tag_columns=[2])) == 212
    assert sum(len(s.entities) for s in read_conll(path)) == 2674 + 212
