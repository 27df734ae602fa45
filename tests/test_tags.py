import pytest

from nagner.data.tags import parse_tag, spans_to_tags, tags_to_spans


def test_iob2():
    assert tags_to_spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]) == [
        ("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5)
    ]


def test_iob1_and_stray_inside_tags_start_entities():
    tags = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG"]
    expected = [("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 5), ("ORG", 5, 7)]
    assert tags_to_spans(tags) == expected
    assert tags_to_spans(tags, scheme="iob1") == expected


def test_bioes_auto_detected():
    tags = ["B-X", "I-X", "E-X", "S-Y", "O", "S-X", "E-Z"]
    assert tags_to_spans(tags) == [("X", 0, 3), ("Y", 3, 4), ("X", 5, 6), ("Z", 6, 7)]
    assert tags_to_spans(tags, scheme="bioes") == tags_to_spans(tags)


def test_entity_at_end_and_empty():
    assert tags_to_spans(["O", "B-MISC", "I-MISC"]) == [("MISC", 1, 3)]
    assert tags_to_spans([]) == []
    assert tags_to_spans(["O", "O"]) == []


@pytest.mark.parametrize("tag", ["X-PER", "B-", "B_PER", "o", "", "PER"])
def test_unknown_tag_named(tag):
    with pytest.raises(ValueError, match=repr(tag).replace("[", r"\[")):
        tags_to_spans(["O", tag])


def test_bioes_tag_in_iob_scheme_rejected():
    with pytest.raises(ValueError, match="'S-X'"):
        tags_to_spans(["S-X"], scheme="iob2")
    with pytest.raises(ValueError, match="scheme"):
        tags_to_spans(["O"], scheme="bilou")


def test_parse_tag():
    assert parse_tag("O") == ("O", "")
    assert parse_tag("I-LOC-part") == ("I", "LOC-part")


def test_spans_to_tags_both_schemes_and_round_trip():
    spans = [("PER", 0, 2), ("LOC", 3, 4), ("ORG", 4, 7)]
    iob2 = spans_to_tags(spans, 7)
    assert iob2 == ["B-PER", "I-PER", "O", "B-LOC", "B-ORG", "I-ORG", "I-ORG"]
    bioes = spans_to_tags(spans, 7, scheme="bioes")
    assert bioes == ["B-PER", "E-PER", "O", "S-LOC", "B-ORG", "I-ORG", "E-ORG"]
    assert tags_to_spans(iob2) == spans
    assert tags_to_spans(bioes) == spans


def test_spans_to_tags_rejects_overlap_and_range():
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_tags([("A", 0, 3), ("B", 1, 2)], 4)
    with pytest.raises(ValueError, match="outside"):
        spans_to_tags([("A", 2, 5)], 4)
    with pytest.raises(ValueError, match="iob2"):
        spans_to_tags([], 2, scheme="iob1")
