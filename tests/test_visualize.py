"""render_text / render_html on a tiny record with nested, discontinuous and HTML-special text."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from nagner.data import Entity, Sentence
from nagner.data.jsonl import sentence_record
from nagner.visualize import render_html, render_text

TEXT = "Staff of the University of Paris & I had pain in my left and right knee <sic>."


def span(fragment: str, after: int = 0) -> list[int]:
    start = TEXT.index(fragment, after)
    return [start, start + len(fragment)]


RECORD = {
    "text": TEXT,
    "entities": [
        {"type": "ORG", "text": "University of Paris", "spans": [span("University of Paris")]},
        {"type": "LOC", "text": "Paris", "spans": [span("Paris")]},
        {"type": "ADR", "text": "pain in my left … knee", "spans": [span("pain in my left"), span("knee")], "score": 0.9},
        {"type": "ADR", "text": "pain in my … right knee", "spans": [span("pain in my"), span("right knee")]},
    ],
}


class EntityCollector(HTMLParser):
    """Every ``nagner-entity`` element in document order as a dict: its attributes, how many entity
    elements enclose it, its text without labels, and its own label (None if it has none)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict] = []
        self.stack: list[tuple[str, dict | None]] = []  # (tag kind, entity dict of this element)
        self.text_outside: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        kind = attributes.get("class") or tag
        entity = None
        if kind == "nagner-entity":
            depth = sum(1 for k, _ in self.stack if k == "nagner-entity")
            entity = {
                "entity": attributes["data-entity"],
                "type": attributes["data-type"],
                "data_depth": int(attributes["data-depth"]),
                "depth": depth,
                "title": attributes["title"],
                "style": attributes["style"],
                "text": "",
                "label": None,
            }
            self.found.append(entity)
        self.stack.append((kind, entity))

    def handle_endtag(self, tag: str) -> None:
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1][0] == "nagner-label":
            owner = next(e for k, e in reversed(self.stack) if k == "nagner-entity")
            owner["label"] = (owner["label"] or "") + data
            return
        for _, entity in self.stack:
            if entity is not None:
                entity["text"] += data
        if not any(e is not None for _, e in self.stack):
            self.text_outside.append(data)


def collect(markup: str) -> EntityCollector:
    parser = EntityCollector()
    parser.feed(markup)
    parser.close()
    assert parser.stack == []  # every element was closed
    return parser


def test_render_text_exact():
    assert render_text(RECORD) == (
        "Staff of the University of Paris & I had pain in my left and right knee <sic>.\n"
        "             ^^^^^^^^^^^^^^^^^^^ ORG\n"
        "                           ^^^^^ LOC\n"
        "                                         ^^^^^^^^^^^^^^^           ^^^^ ADR#3\n"
        "                                         ^^^^^^^^^^          ^^^^^^^^^^ ADR#4"
    )


def test_render_text_of_sentence_and_several_records():
    sentence = Sentence(["Anna", "Berg", "went", "to", "Paris"], [Entity("PER", (0, 1)), Entity("LOC", (4,))])
    assert render_text(sentence) == "Anna Berg went to Paris\n^^^^^^^^^ PER\n                  ^^^^^ LOC"
    assert render_text([sentence, {"text": "a\tb\nc", "entities": []}]) == (
        "Anna Berg went to Paris\n^^^^^^^^^ PER\n                  ^^^^^ LOC\n\na b c"
    )


def test_html_fragments_nesting_and_labels():
    found = collect(render_html(RECORD)).found
    rows = [(e["entity"], e["type"], e["data_depth"], e["depth"], e["text"], e["label"]) for e in found]
    assert rows == [
        ("1", "ORG", 0, 0, "University of Paris", "ORG"),
        ("2", "LOC", 1, 1, "Paris", "LOC"),
        ("3", "ADR", 0, 0, "pain in my left", "ADR#3"),
        ("4", "ADR", 1, 1, "pain in my", "ADR#4"),
        ("4", "ADR", 0, 0, "right knee", "ADR#4"),
        ("3", "ADR", 1, 1, "knee", "ADR#3"),
    ]
    # the fragments of one entity share the colour; other types get other colours
    colour = {e["entity"]: e["style"].split("border:2px solid ")[1].split(";")[0] for e in found}
    assert colour["3"] == colour["4"]
    assert len({colour["1"], colour["2"], colour["3"]}) == 3
    titles = {e["entity"]: e["title"] for e in found}
    assert titles["3"] == "ADR#3: pain in my left … knee (score 0.900)"
    assert titles["4"] == "ADR#4: pain in my … right knee"


def test_html_escapes_text_and_types():
    record = {"text": 'a <b> & "c"', "entities": [{"type": "X<y>", "spans": [[2, 5]]}]}
    markup = render_html(record)
    assert "<b>" not in markup and 'X<y>' not in markup
    assert "&lt;b&gt;" in markup and "&amp;" in markup and "X&lt;y&gt;" in markup
    parser = collect(markup)
    assert [(e["type"], e["text"], e["label"]) for e in parser.found] == [("X<y>", "<b>", "X<y>")]
    assert "".join(parser.text_outside) == 'a  & "c"'
    assert render_html(RECORD).count("&lt;sic&gt;.") == 1


def test_html_cuts_crossing_fragments_into_labelled_and_unlabelled_pieces():
    record = {"text": "abcdefghij", "entities": [{"type": "A", "spans": [[0, 5]]}, {"type": "B", "spans": [[3, 8]]}]}
    rows = [(e["entity"], e["depth"], e["text"], e["label"]) for e in collect(render_html(record)).found]
    assert rows == [("1", 0, "abcde", "A"), ("2", 1, "de", "B"), ("2", 0, "fgh", None)]


def test_html_of_several_records_and_a_sentence():
    sentence = Sentence(["Paris", "is", "big"], [Entity("LOC", (0,))])
    markup = render_html([sentence, {"text": "no entities here", "entities": []}, RECORD])
    assert markup.count('class="nagner-record"') == 3
    found = collect(markup).found
    assert [(e["type"], e["text"]) for e in found[:1]] == [("LOC", "Paris")]
    loc_styles = {e["style"] for e in found if e["type"] == "LOC" and e["depth"] == 0}
    assert len(loc_styles) == 1  # a type keeps its colour across the records of one rendering
    assert render_html(sentence) == render_html(sentence_record(sentence))


@pytest.mark.parametrize(
    "record, message",
    [
        ({"entities": []}, "a record must be"),
        ({"text": "abc", "entities": [{"type": "A", "spans": [[1, 4]]}]}, r"entity 1: span \[1, 4\]"),
        ({"text": "abc", "entities": [{"type": "A", "spans": [[2, 2]]}]}, r"entity 1: span \[2, 2\]"),
        ({"text": "abc", "entities": [{"type": "A", "spans": []}]}, "entity 1 must have"),
    ],
)
def test_bad_records_are_refused(record, message):
    with pytest.raises(ValueError, match=message):
        render_html(record)
    with pytest.raises(ValueError, match=message):
        render_text(record)
