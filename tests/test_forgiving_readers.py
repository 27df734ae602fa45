"""Readers accept what other CoNLL/JSON tools accept, and refuse everything else with file:line.

Forgiven: whitespace-only separator lines, a UTF-8 byte order mark, CRLF line ends, tab or space
columns, -DOCSTART- lines, IOB1 ("I-" after "O") and BILOU tags. Refused, in every reader and every
command, with `file:line: ...`, exit 2, no traceback and no output file: binary files and text that
is not UTF-8.
"""

import pytest

from nagner.cli import main
from nagner.data.brat import read_brat
from nagner.data.conll import read_conll
from nagner.data.example import Entity
from nagner.data.jsonl import read_jsonl
from nagner.data.loading import read_sentences
from nagner.data.w2ner import read_w2ner
from nagner.errors import NagNerInputError

EXPECTED = [
    [Entity("PER", (0, 1)), Entity("LOC", (3,))],
    [Entity("ORG", (0,))],
]
PLAIN = "Ann B-PER\nLee I-PER\nin O\nParis B-LOC\n\nIBM B-ORG\nwins O\n"


@pytest.mark.parametrize("case, data", [
    ("plain", PLAIN.encode()),
    ("whitespace-only separators", PLAIN.replace("\n\n", "\n \t \n").encode()),
    ("byte order mark", b"\xef\xbb\xbf" + PLAIN.encode()),
    ("CRLF line ends", PLAIN.replace("\n", "\r\n").encode()),
    ("tab columns, trailing tab", PLAIN.replace(" ", "\t").replace("\n", "\t\n").replace("\t\n\t\n", "\n\n").encode()),
    ("-DOCSTART- lines", ("-DOCSTART- -X- O\n\n" + PLAIN.replace("\n\n", "\n\n-DOCSTART- O\n\n")).encode()),
    ("IOB1", PLAIN.replace("B-PER", "I-PER").replace("B-LOC", "I-LOC").replace("B-ORG", "I-ORG").encode()),
    ("BILOU", PLAIN.replace("I-PER", "L-PER").replace("B-LOC", "U-LOC").replace("B-ORG", "U-ORG").encode()),
    ("all at once", b"\xef\xbb\xbf-DOCSTART- O\r\n  \r\n" + PLAIN.replace("B-PER", "I-PER").replace("\n\n", "\n\t\n")
     .replace("\n", "\r\n").encode()),
])
def test_conll_reader_forgives(tmp_path, case, data):
    path = tmp_path / "data.conll"
    path.write_bytes(data)
    sentences = read_conll(path)
    assert [s.words for s in sentences] == [["Ann", "Lee", "in", "Paris"], ["IBM", "wins"]]
    assert [s.entities for s in sentences] == EXPECTED


def test_conll_four_columns_with_whitespace_lines_as_in_public_files(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("-DOCSTART- -X- -X- O\n \nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n \nPeter NNP B-NP B-PER\n",
                    encoding="utf-8")
    assert [s.entities for s in read_conll(path)] == [[Entity("ORG", (0,))], [Entity("PER", (0,))]]


def test_other_malformed_conll_lines_still_fail_at_their_line(tmp_path):
    path = tmp_path / "data.conll"
    path.write_text("Ann B-PER\n \nLee I-PER extra\n", encoding="utf-8")
    with pytest.raises(NagNerInputError, match="expected 2 columns") as error:
        read_conll(path)
    assert error.value.line == 3


def _readers(tmp_path):
    """Every reader, each given the file it reads: name -> (call, path)."""
    brat_txt, brat_ann = tmp_path / "doc.txt", tmp_path / "doc.ann"
    brat_txt.write_text("Ann Lee\n", encoding="utf-8")
    brat_ann.write_text("T1\tPER 0 7\tAnn Lee\n", encoding="utf-8")
    return {  # name -> (call, path, a good first line)
        "conll": (read_conll, tmp_path / "data.conll", b"Ann B-PER"),
        "jsonl": (read_jsonl, tmp_path / "data.jsonl", b'{"text": "Ann"}'),
        "w2ner": (read_w2ner, tmp_path / "data.json", b'{"sentence": ["Ann"]}'),
        "auto (json)": (read_sentences, tmp_path / "auto.json", b'{"sentence": ["Ann"]}'),
        "auto (conll)": (read_sentences, tmp_path / "auto.txt", b"Ann B-PER"),
        "brat .txt": (lambda path: read_brat(path, brat_ann), tmp_path / "bad.txt", b"Ann Lee"),
        "brat .ann": (lambda path: read_brat(brat_txt, path), tmp_path / "bad.ann", b"T1\tPER 0 3\tAnn"),
    }


@pytest.mark.parametrize("reader", ["conll", "jsonl", "w2ner", "auto (json)", "auto (conll)", "brat .txt", "brat .ann"])
@pytest.mark.parametrize("rest, line, message", [
    (b"\nZo\xeb B-PER\n", 2, "not UTF-8 text: byte 0xeb at column 3"),  # Latin-1
    (b"\r\n\r\n\x1a\x00\x00\x00\rIHDR\x89", 3, "NUL byte at column 2"),  # binary
])
def test_every_reader_names_file_and_line_of_bad_bytes(tmp_path, reader, rest, line, message):
    read, path, good_line = _readers(tmp_path)[reader]
    path.write_bytes(good_line + rest)
    with pytest.raises(NagNerInputError) as error:
        read(path)
    assert (error.value.path, error.value.line) == (str(path), line)
    assert message in error.value.message


@pytest.mark.parametrize("command", ["evaluate", "train", "predict", "predict --document"])
def test_every_command_refuses_bad_bytes_with_exit_2_and_no_output(capsys, tmp_path, tiny_encoder, tiny_model_dir, command):
    bad = tmp_path / "bad.conll"
    bad.write_bytes(b"Ann B-PER\n\xff\xfe B-PER\n")
    out = tmp_path / "out"
    argv = {
        "evaluate": ["evaluate", "-m", tiny_model_dir, "-d", bad, "-o", out],
        "train": ["train", "--encoder", tiny_encoder, "--train", bad, "--output-dir", out, "--no-progress"],
        "predict": ["predict", "-m", tiny_model_dir, "-i", bad, "-o", out],
        "predict --document": ["predict", "-m", tiny_model_dir, "-i", bad, "--document", "-o", out],
    }[command]
    code = main([str(a) for a in argv])
    stdout, err = capsys.readouterr()
    assert (code, stdout) == (2, "")
    assert err.startswith(f"nagner {command.split()[0]}: error: {bad}:2: not UTF-8 text: byte 0xff")
    assert "Traceback" not in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.conll"]
