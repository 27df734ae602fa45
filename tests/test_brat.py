import pytest

from nagner.data.brat import read_brat, write_brat
from nagner.data.example import Entity, Sentence
from nagner.data.text import sentence_from_text
from nagner.errors import NagNerInputError


def test_write_and_read_back(tmp_path):
    first = sentence_from_text("Ann visited the University of Paris.")
    first.entities = [Entity("PER", (0,)), Entity("ORG", (3, 4, 5)), Entity("LOC", (5,))]
    second = Sentence(["pain", "in", "left", "and", "right", "knee"], [Entity("ADR", (0, 1, 2, 5))])
    txt, ann = tmp_path / "doc.txt", tmp_path / "doc.ann"
    write_brat([first, second, sentence_from_text("")], txt, ann)
    assert txt.read_text() == "Ann visited the University of Paris.\npain in left and right knee\n\n"
    assert ann.read_text() == (
        "T1\tPER 0 3\tAnn\n"
        "T2\tORG 16 35\tUniversity of Paris\n"
        "T3\tLOC 30 35\tParis\n"
        "T4\tADR 37 49;60 64\tpain in left knee\n"
    )
    back = read_brat(txt, ann)
    assert [s.words for s in back] == [first.words, second.words, []]
    assert [s.entities for s in back] == [first.entities, second.entities, []]
    assert [s.line for s in back] == [1, 2, 3]


def test_read_ignores_other_annotations_and_reports_bad_lines(tmp_path):
    txt, ann = tmp_path / "d.txt", tmp_path / "d.ann"
    txt.write_text("Ann met Bob\nhere")
    ann.write_text("T1\tPER 0 3\tAnn\nR1\tKnows Arg1:T1 Arg2:T2\n#1\tAnnotatorNotes T1\tnote\n")
    assert [s.entities for s in read_brat(txt, ann)] == [[Entity("PER", (0,))], []]
    ann.write_text("T1\tPER 0 3\tAnn\nT2\tPER 8 x\tBob\n")
    with pytest.raises(NagNerInputError, match="expected") as info:
        read_brat(txt, ann)
    assert (info.value.path, info.value.line) == (str(ann), 2)
    ann.write_text("T1\tPER 8 14\tBob\\nhe\n")
    with pytest.raises(NagNerInputError, match="leave line 1") as info:
        read_brat(txt, ann)
    assert info.value.line == 1
