from nagner.data.example import Entity, Sentence
from nagner.data.text import sentence_from_char_entities, sentence_from_text, tokenize, with_offsets


def test_tokenize_words_and_punctuation():
    assert tokenize("Don't stop, state-of-the-art!") == [
        ("Don't", 0, 5), ("stop", 6, 10), (",", 10, 11), ("state-of-the-art", 12, 28), ("!", 28, 29)
    ]


def test_tokenize_unicode_and_symbols():
    assert tokenize("Müller (Zürich) 3.5 €") == [
        ("Müller", 0, 6), ("(", 7, 8), ("Zürich", 8, 14), (")", 14, 15),
        ("3", 16, 17), (".", 17, 18), ("5", 18, 19), ("€", 20, 21),
    ]


def test_tokenize_trailing_apostrophe_and_hyphen_are_separate():
    assert [w for w, _, _ in tokenize("the boys' -x")] == ["the", "boys", "'", "-", "x"]


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
