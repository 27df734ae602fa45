import pytest

from nagner.data.example import Entity, Sentence
from nagner.data.text import (
    join_sentences,
    sentence_from_char_entities,
    sentence_from_text,
    text_sentences,
    tokenize,
    with_offsets,
)

# Tricky strings and the words CoNLL-style corpora (CoNLL-2003, OntoNotes/PTB) would give them.
TOKENIZATION = [
    ("Apple is buying U.K. startup for $1 billion.",
     ["Apple", "is", "buying", "U.K.", "startup", "for", "$", "1", "billion", "."]),
    ("Tim Cook met Mr. Smith in Washington, D.C. at 5 p.m. today.",
     ["Tim", "Cook", "met", "Mr.", "Smith", "in", "Washington", ",", "D.C.", "at", "5", "p.m.", "today", "."]),
    ("Shares rose 1.5 % to 3,000.50 US$ (i.e. more).",
     ["Shares", "rose", "1.5", "%", "to", "3,000.50", "US$", "(", "i.e.", "more", ")", "."]),
    ("Mail jane.doe@example.com or see https://example.org/a?b=1 now.",
     ["Mail", "jane.doe@example.com", "or", "see", "https://example.org/a?b=1", "now", "."]),
    ("@nagner_dev loves #NLP, don't you?",
     ["@nagner_dev", "loves", "#NLP", ",", "do", "n't", "you", "?"]),
    ("A state-of-the-art U.S.-based firm's CEO paid €3.",
     ["A", "state-of-the-art", "U.S.-based", "firm", "'s", "CEO", "paid", "€", "3", "."]),
    ("Müller (Zürich) 3.5 € 東京", ["Müller", "(", "Zürich", ")", "3.5", "€", "東京"]),
    ('"Hello," she said -- and left...', ['"', "Hello", ",", '"', "she", "said", "--", "and", "left", "..."]),
]


@pytest.mark.parametrize("text, words", TOKENIZATION, ids=[words[0] for _, words in TOKENIZATION])
def test_tokenize_follows_conll_conventions_with_exact_offsets(text, words):
    found = tokenize(text)
    assert [w for w, _, _ in found] == words
    assert all(text[start:end] == word for word, start, end in found)


def test_tokenize_german_rules():
    assert [w for w, _, _ in tokenize("Die U.S.-Firma zahlte 1,5 Mio. € an Müller-Lüdenscheidt z.B. am Montag.", language="de")] == [
        "Die", "U.S.-Firma", "zahlte", "1,5", "Mio.", "€", "an", "Müller-Lüdenscheidt", "z.B.", "am", "Montag", "."
    ]


def test_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="no tokenizer rules for language 'xx-unknown'"):
        tokenize("a", language="xx-unknown")


def test_text_sentences_split_paragraphs_and_sentences_not_abbreviations():
    text = "Tim Cook visited the U.K. on Tuesday. He met Mr. Smith at 5 p.m. in London!\n\nA new paragraph\nwraps here."
    sentences = text_sentences(text)
    spans = [(s.offsets[0][0], s.offsets[-1][1]) for s in sentences]
    assert [text[a:b] for a, b in spans] == [
        "Tim Cook visited the U.K. on Tuesday.",
        "He met Mr. Smith at 5 p.m. in London!",
        "A new paragraph\nwraps here.",
    ]
    assert all(s.text == text and [text[a:b] for a, b in s.offsets] == s.words for s in sentences)
    assert text_sentences(" \n\n\t") == []


def test_join_sentences_shifts_entities_and_records_sentence_spans():
    text = "Ann met Bo. Bo left Paris."
    first, second = text_sentences(text)
    first.entities = [Entity("PER", (0,)), Entity("PER", (2,))]
    second.entities = [Entity("PER", (0,)), Entity("LOC", (2,))]
    joined = join_sentences(text, [first, second])
    assert joined.words == ["Ann", "met", "Bo", ".", "Bo", "left", "Paris", "."]
    assert joined.entities == [Entity("PER", (0,)), Entity("PER", (2,)), Entity("PER", (4,)), Entity("LOC", (6,))]
    assert joined.sentence_spans == [(0, 11), (12, 26)]
    assert [joined.entity_text(e) for e in joined.entities] == ["Ann", "Bo", "Bo", "Paris"]


def test_tokenize_boundaries_split_words():
    assert tokenize("New-Yorker visits", boundaries=[3, 4, 100]) == [
        ("New", 0, 3), ("-", 3, 4), ("Yorker", 4, 10), ("visits", 11, 17)
    ]


def test_sentence_from_text_offsets_and_blank():
    sentence = sentence_from_text("  Hi there ")
    assert sentence.words == ["Hi", "there"]
    assert sentence.offsets == [(2, 4), (5, 10)]
    assert sentence.text == "  Hi there "
    for text in ("", "  \n\t"):
        blank = sentence_from_text(text)
        assert blank.words == [] and blank.offsets == [] and blank.entities == []


def test_sentence_from_char_entities():
    sentence = sentence_from_char_entities("pain in left and right knee", [
        ("ADR", [(0, 12), (23, 27)], None), ("ADR", [(0, 7), (17, 27)], 0.5),
    ])
    assert sentence.words == ["pain", "in", "left", "and", "right", "knee"]
    assert sentence.entities == [Entity("ADR", (0, 1, 2, 5)), Entity("ADR", (0, 1, 4, 5))]
    assert sentence.entities[1].score == 0.5


def test_with_offsets():
    plain = with_offsets(Sentence(["New", "York", "."]))
    assert plain.text == "New York ." and plain.offsets == [(0, 3), (4, 8), (9, 10)]
    located = with_offsets(Sentence(["New", "York", "."], text="New  York."))
    assert located.offsets == [(0, 3), (5, 9), (9, 10)]
    mismatch = with_offsets(Sentence(["a", "b"], text="x y"))
    assert mismatch.text == "a b"
    original = Sentence(["a"])
    with_offsets(original)
    assert original.text is None
