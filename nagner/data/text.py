"""Raw text to words with character offsets, and char-span entities to word entities."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from nagner.data.example import Entity, Sentence

# A word is a run of word characters, possibly joined by internal apostrophes or hyphens
# ("don't", "state-of-the-art"); every other non-space character is a word of its own.
_WORD = re.compile(r"\w+(?:['’\-]\w+)*|[^\w\s]")


def tokenize(text: str, boundaries: Iterable[int] = ()) -> list[tuple[str, int, int]]:
    """Words of ``text`` as ``(word, start, end)`` with character offsets ``[start, end)``.

    A word that contains one of the character offsets in ``boundaries`` strictly inside it is
    split there, so that annotated character spans always start and end on word edges.
    """
    cuts = sorted(set(boundaries))
    words: list[tuple[str, int, int]] = []
    for match in _WORD.finditer(text):
        start, end = match.span()
        inner = [c for c in cuts if start < c < end]
        for a, b in zip([start, *inner], [*inner, end], strict=True):
            words.append((text[a:b], a, b))
    return words


def sentence_from_text(text: str) -> Sentence:
    """A Sentence (words, offsets, text) without entities; empty or blank text gives no words."""
    words = tokenize(text)
    return Sentence(words=[w for w, _, _ in words], text=text, offsets=[(a, b) for _, a, b in words])


def sentence_from_char_entities(
    text: str, entities: Sequence[tuple[str, Sequence[tuple[int, int]], float | None]]
) -> Sentence:
    """Tokenize ``text`` so every span edge is a word edge; each ``(type, spans, score)`` becomes
    the Entity of the words its character spans cover.

    Raises ValueError for a span that is not ``0 <= start < end <= len(text)`` or covers no word.
    """
    for _, spans, _ in entities:
        for start, end in spans:
            if not 0 <= start < end <= len(text):
                raise ValueError(
                    f"span [{start}, {end}] must satisfy 0 <= start < end <= {len(text)} (text length)"
                )
    words = tokenize(text, boundaries=[offset for _, spans, _ in entities for span in spans for offset in span])
    result: list[Entity] = []
    for type_, spans, score in entities:
        indices: set[int] = set()
        for start, end in spans:
            covered = [i for i, (_, a, b) in enumerate(words) if a < end and start < b]
            if not covered:
                raise ValueError(f"span [{start}, {end}] ({text[start:end]!r}) covers no word")
            indices.update(covered)
        entity = Entity(type_, tuple(sorted(indices)), score)
        if entity not in result:
            result.append(entity)
    return Sentence(
        words=[w for w, _, _ in words], entities=result, text=text, offsets=[(a, b) for _, a, b in words]
    )


def with_offsets(sentence: Sentence) -> Sentence:
    """The sentence with ``text`` and ``offsets`` filled in (a copy; the input is not changed).

    Kept as is when both are known; when only ``text`` is known the words are located in it
    left to right; otherwise (or when a word is not found) text = words joined by single spaces.
    """
    if sentence.text is not None and sentence.offsets is not None:
        return sentence
    if sentence.text is not None:
        offsets, pos = [], 0
        for word in sentence.words:
            start = sentence.text.find(word, pos)
            if start < 0:
                break
            pos = start + len(word)
            offsets.append((start, pos))
        else:
            return replace(sentence, offsets=offsets)
    offsets, pos = [], 0
    for word in sentence.words:
        offsets.append((pos, pos + len(word)))
        pos += len(word) + 1
    return replace(sentence, text=" ".join(sentence.words), offsets=offsets)
