import io
import os
from pathlib import Path

import pytest
import torch

from nagner.common.atomic import atomic_outputs
from nagner.common.textfile import iter_file_lines, iter_lines
from nagner.data.brat import read_brat
from nagner.data.example import Entity
from nagner.data.sentence_writers import BratSentenceWriter, ConllSentenceWriter, JsonlSentenceWriter
from nagner.errors import NagNerInputError
from nagner.modeling import NagNerModel
from nagner.prediction import (
    line_sentence,
    output_paths,
    predict_stream,
    write_predictions,
)


@pytest.fixture(scope="module")
def model(tiny_encoder):
    torch.manual_seed(0)
    return NagNerModel.from_encoder(tiny_encoder, ["PER", "LOC", "ORG"]).eval()


def test_iter_lines_keeps_every_line_and_strips_only_line_ends():
    raw = "\ufeffAnn in Paris\r\n\n   \n\tZoë  \nlast".encode()
    assert list(iter_lines(io.BytesIO(raw), "x")) == ["Ann in Paris", "", "   ", "\tZoë  ", "last"]
    assert list(iter_lines(io.StringIO("a\n\nb\n"), "x")) == ["a", "", "b"]


def test_iter_lines_reports_bad_utf8_at_its_line_and_refuses_empty_input():
    with pytest.raises(NagNerInputError) as error:
        list(iter_lines(io.BytesIO(b"ok\nfine\nbad \xff here\n"), "in.txt"))
    assert (error.value.path, error.value.line) == ("in.txt", 3)
    assert "0xff" in error.value.message
    with pytest.raises(NagNerInputError, match="no input lines") as error:
        list(iter_lines(io.BytesIO(b""), "in.txt"))
    assert error.value.path == "in.txt"


def test_iter_file_lines_checks_the_file_before_reading(tmp_path):
    with pytest.raises(NagNerInputError, match="no such file"):
        iter_file_lines(tmp_path / "missing.txt")
    with pytest.raises(NagNerInputError, match="not a file"):
        iter_file_lines(tmp_path)


def test_line_sentence_text_and_words_modes():
    text = line_sentence("  Zoë lives in Zürich.", source="in.txt", number=7)
    assert text.words == ["Zoë", "lives", "in", "Zürich", "."]
    assert text.text == "  Zoë lives in Zürich."
    assert [text.text[a:b] for a, b in text.offsets] == text.words
    assert (text.source, text.line) == ("in.txt", 7)
    words = line_sentence("  New \t York  is big ", words=True)
    assert words.words == ["New", "York", "is", "big"]
    assert words.text == "New York is big"
    assert words.offsets == [(0, 3), (4, 8), (9, 11), (12, 15)]
    blank = line_sentence("   ", words=True)
    assert (blank.words, blank.text) == ([], "")


class Recorder:
    """Delegates to a model and records the chunk sizes it is given."""

    def __init__(self, model):
        self.model = model
        self.chunks = []

    def predict_sentences(self, sentences, batch_size=32, threshold=0.0):
        self.chunks.append(len(sentences))
        return self.model.predict_sentences(sentences, batch_size=batch_size, threshold=threshold)


def test_predict_stream_reads_one_chunk_before_the_first_record(model):
    read = 0

    def lines():
        nonlocal read
        for i in range(100_000):
            read += 1
            yield f"Ann Lee visited Paris number {i}."

    recorder = Recorder(model)
    stream = predict_stream(recorder, lines(), chunk_size=4, batch_size=2)
    first = next(stream)
    assert read == 4  # one chunk, not the whole input
    assert first.text == "Ann Lee visited Paris number 0." and first.line == 1
    rest = [next(stream) for _ in range(5)]
    assert read == 8 and recorder.chunks == [4, 4]
    assert [s.line for s in rest] == [2, 3, 4, 5, 6]


def test_predict_stream_keeps_order_empty_lines_and_matches_one_big_call(model):
    texts = ["Ann Lee visited Paris.", "", "   ", "Zoë Ångström works for Blue River in Zürich 東京.", "x", "Berlin"]
    recorder = Recorder(model)
    streamed = list(predict_stream(recorder, texts, source="t", chunk_size=4, batch_size=3))
    assert recorder.chunks == [2, 2]  # chunks of 4 texts; blank ones have no sentence to predict
    assert [s.text for s in streamed] == texts
    assert [(s.source, s.line) for s in streamed] == [("t", i) for i in range(1, 7)]
    assert streamed[1].entities == [] and streamed[2].entities == []
    whole = model.predict_sentences([line_sentence(t) for t in texts])
    assert [s.entities for s in streamed] == whole
    assert any(whole)  # the untrained model does predict something, so the comparison means something
    for got, expected in zip(streamed, whole):
        assert [e.score for e in got.entities] == pytest.approx([e.score for e in expected], abs=1e-5)


def test_threshold_above_one_predicts_nothing(model):
    assert all(not s.entities for s in predict_stream(model, ["Ann Lee visited Paris."] * 3, threshold=1.01))


def test_output_paths_for_brat_pairs():
    assert output_paths("jsonl", "out.txt") == [Path("out.txt")]
    for given in ("d/out", "d/out.txt", "d/out.ann"):
        assert output_paths("brat", given) == [Path("d/out.txt"), Path("d/out.ann")]
    assert output_paths("brat", "out.v1") == [Path("out.v1.txt"), Path("out.v1.ann")]


def sentence(words, entities, line=1):
    s = line_sentence(" ".join(words), source="in.txt", number=line)
    s.entities = entities
    return s


def test_conll_writer_output_and_empty_sentence():
    out = io.StringIO()
    writer = ConllSentenceWriter(out)
    writer.write(sentence(["Ann", "Lee", "in", "Paris"], [Entity("PER", (0, 1)), Entity("LOC", (3,))]))
    writer.write(sentence([], []))
    writer.write(sentence(["Berlin"], [Entity("LOC", (0,))]))
    assert out.getvalue() == "Ann B-PER\nLee I-PER\nin O\nParis B-LOC\n\n\nBerlin B-LOC\n\n"


@pytest.mark.parametrize("entities, kind", [
    ([Entity("ORG", (0, 1, 2)), Entity("LOC", (2,))], "nested"),
    ([Entity("ADR", (0, 2))], "discontinuous"),
])
def test_conll_writer_refuses_non_flat_entities(entities, kind):
    with pytest.raises(NagNerInputError, match=f"{kind} entity .*write jsonl or brat") as error:
        ConllSentenceWriter(io.StringIO()).write(sentence(["Bank", "of", "Paris"], entities, line=9))
    assert (error.value.path, error.value.line) == ("in.txt", 9)


def test_brat_writer_offsets_across_sentences_and_fragments(tmp_path):
    txt, ann = io.StringIO(), io.StringIO()
    writer = BratSentenceWriter(txt, ann)
    writer.write(sentence(["Ann", "Lee"], [Entity("PER", (0, 1))]))
    writer.write(sentence([], []))
    writer.write(sentence(["dry", "mouth", "and", "skin"], [Entity("ADR", (0, 1)), Entity("ADR", (0, 3))]))
    assert txt.getvalue() == "Ann Lee\n\ndry mouth and skin\n"
    assert ann.getvalue() == "T1\tPER 0 7\tAnn Lee\nT2\tADR 9 18\tdry mouth\nT3\tADR 9 12;23 27\tdry skin\n"
    (tmp_path / "a.txt").write_text(txt.getvalue(), encoding="utf-8")
    (tmp_path / "a.ann").write_text(ann.getvalue(), encoding="utf-8")
    back = read_brat(tmp_path / "a.txt", tmp_path / "a.ann")
    assert [s.entities for s in back] == [[Entity("PER", (0, 1))], [], [Entity("ADR", (0, 1)), Entity("ADR", (0, 3))]]


def test_jsonl_writer_keeps_unicode_and_empty_records():
    out = io.StringIO()
    writer = JsonlSentenceWriter(out)
    writer.write(sentence(["Zoë"], [Entity("PER", (0,), 0.5)]))
    writer.write(line_sentence(""))
    assert out.getvalue() == (
        '{"text": "Zoë", "entities": [{"type": "PER", "text": "Zoë", "spans": [[0, 3]], "score": 0.5}], '
        '"sentences": [[0, 3]]}\n'
        '{"text": "", "entities": [], "sentences": []}\n'
    )


def test_write_predictions_error_leaves_no_file_and_keeps_an_old_one(tmp_path):
    def failing():
        yield sentence(["Ann"], [])
        raise NagNerInputError("boom", "in.txt", 2)

    with pytest.raises(NagNerInputError, match="boom"):
        write_predictions(failing(), "jsonl", tmp_path / "new.jsonl")
    old = tmp_path / "old.jsonl"
    old.write_text("old\n")
    nested = sentence(["Bank", "of", "Paris"], [Entity("ORG", (0, 1, 2)), Entity("LOC", (2,))], line=2)
    with pytest.raises(NagNerInputError, match="nested"):
        write_predictions(iter([sentence(["Ann"], []), nested]), "conll", old)
    with pytest.raises(NagNerInputError, match="boom"):
        write_predictions(failing(), "brat", tmp_path / "doc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.jsonl"]
    assert old.read_text() == "old\n"


def test_write_predictions_to_files_and_stdout(tmp_path, capsys):
    sentences = [sentence(["Ann", "Lee"], [Entity("PER", (0, 1), 0.75)]), line_sentence("  ")]
    assert write_predictions(iter(sentences), "jsonl") == 2
    assert capsys.readouterr().out.splitlines()[1] == '{"text": "  ", "entities": [], "sentences": []}'
    assert write_predictions(iter(sentences), "brat", tmp_path / "doc.ann") == 2
    assert (tmp_path / "doc.txt").read_text() == "Ann Lee\n  \n"
    assert (tmp_path / "doc.ann").read_text() == "T1\tPER 0 7\tAnn Lee\n"
    with pytest.raises(NagNerInputError, match="brat output is two files"):
        write_predictions(iter(sentences), "brat")
    with pytest.raises(NagNerInputError, match="unknown output format"):
        write_predictions(iter(sentences), "xml", tmp_path / "x.xml")


def test_atomic_outputs_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_outputs([tmp_path / "a.txt"]) as (out,):
            out.write("x\n")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    with pytest.raises(NagNerInputError, match="does not exist"):
        with atomic_outputs([tmp_path / "no" / "a.txt"]):
            pass
    with pytest.raises(NagNerInputError, match="is a directory"):
        with atomic_outputs([tmp_path]):
            pass


def test_predict_stream_splits_sentences_with_the_models_language(model):
    text = "Ann Lee kam z.B. nach Paris. Sie blieb."
    english = list(predict_stream(model, [text], language="en"))[0]
    model_language = model.config.text_language
    try:
        model.config.text_language = "de"
        german = list(predict_stream(model, [text]))[0]
    finally:
        model.config.text_language = model_language
    assert german.words[:6] == ["Ann", "Lee", "kam", "z.B.", "nach", "Paris"]
    assert english.words[3:6] == ["z.", "B.", "nach"]  # English rules do not know the German abbreviation
    assert german.sentence_spans == [(0, 28), (29, 39)]
    assert [text[a:b] for a, b in german.offsets] == german.words
