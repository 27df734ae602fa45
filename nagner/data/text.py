"""Raw text to sentences and words with character offsets, and char-span entities to word entities.

Words and sentences come from spaCy's rule-based tokenizer and sentencizer on a blank pipeline
(no model download; a maintained tokenizer with exceptions for abbreviations, URLs, e-mail
addresses, numbers and currencies, which keeps every token's character offset). It is set to the
conventions of CoNLL-style corpora, which the models are trained on:

    "U.K. startup for $1.5 billion, don't"  →  U.K. | startup | for | $ | 1.5 | billion | , | do | n't
    "state-of-the-art #NLP by @nagner_dev, jane@b.org"  →  state-of-the-art | #NLP | by | @nagner_dev | , | jane@b.org

Hyphenated words stay whole (English spaCy splits them; CoNLL-2003 and GermEval do not), and a
hashtag keeps its "#". ``language`` picks spaCy's rules for that language ("en", "de", ...); the
model stores it (``NagNerConfig.text_language``) so training and prediction tokenize alike.
A blank line always ends a sentence (paragraphs); inside a paragraph the sentencizer splits
after sentence-final punctuation tokens, so "U.K." or "Mr." do not end a sentence (an
abbreviation that really ends a sentence, "... in the U.K. Then ...", is not split there either).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from nagner.data.example import Entity, Sentence
from nagner.errors import NagNerInputError

DEFAULT_LANGUAGE = "en"


@functools.lru_cache(maxsize=8)
def text_pipeline(language: str = DEFAULT_LANGUAGE) -> Any:
    """The blank spaCy pipeline (tokenizer + sentencizer) for ``language``, built once.

    Raises ValueError for a language spaCy has no rules for.
    """
    import spacy  # deferred: about 0.6 s of import time, needed only for raw text
    from spacy.lang.char_classes import HYPHENS
    from spacy.util import compile_infix_regex, compile_prefix_regex

    try:
        nlp = spacy.blank(language)
    except (ImportError, KeyError, ValueError) as error:
        raise ValueError(f"spaCy has no tokenizer rules for language {language!r} ({error})") from None
    hyphen_infix = f"(?:{HYPHENS})"
    infixes = [pattern for pattern in nlp.Defaults.infixes if hyphen_infix not in pattern]
    prefixes = [pattern for pattern in nlp.Defaults.prefixes if pattern != "#"]
    nlp.tokenizer.infix_finditer = compile_infix_regex(infixes).finditer
    nlp.tokenizer.prefix_search = compile_prefix_regex(prefixes).search
    nlp.add_pipe("sentencizer")
    return nlp


def check_language(language: str) -> None:
    """Raise NagNerInputError when spaCy has no tokenizer rules for ``language``."""
    try:
        text_pipeline(language)
    except ValueError as error:
        raise NagNerInputError(f"--text-language: {error}") from None


def tokenize(
    text: str, boundaries: Iterable[int] = (), language: str = DEFAULT_LANGUAGE
) -> list[tuple[str, int, int]]:
    """Words of ``text`` as ``(word, start, end)`` with character offsets ``[start, end)``.

    A word that contains one of the character offsets in ``boundaries`` strictly inside it is
    split there, so that annotated character spans always start and end on word edges.
    Whitespace is never part of a word.
    """
    tokens = [(token.idx, token.idx + len(token.text)) for token in text_pipeline(language).tokenizer(text)]
    return _words(text, tokens, boundaries)


def _words(text: str, tokens: Iterable[tuple[int, int]], boundaries: Iterable[int] = ()) -> list[tuple[str, int, int]]:
    cuts = sorted(set(boundaries))
    words: list[tuple[str, int, int]] = []
    for start, end in tokens:
        if text[start:end].isspace():
            continue  # spaCy keeps runs of extra whitespace as tokens
        inner = [c for c in cuts if start < c < end]
        for a, b in zip([start, *inner], [*inner, end], strict=True):
            words.append((text[a:b], a, b))
    return words


def _paragraphs(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` of the blocks of ``text`` between blank lines."""
    spans, start, pos = [], 0, 0
    for line in text.splitlines(keepends=True):
        if not line.strip():
            if text[start:pos].strip():
                spans.append((start, pos))
            start = pos + len(line)
        pos += len(line)
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def text_sentences(text: str, language: str = DEFAULT_LANGUAGE) -> list[Sentence]:
    """The sentences of ``text`` (paragraphs, then the sentencizer), without entities.

    Each Sentence's ``text`` is the whole ``text`` and its ``offsets`` point into it, so the
    sentences of one text share one coordinate system. Blank text gives no sentences.
    """
    nlp = text_pipeline(language)
    sentences: list[Sentence] = []
    for begin, end in _paragraphs(text):
        doc = nlp(text[begin:end])
        for span in doc.sents:
            tokens = [(begin + token.idx, begin + token.idx + len(token.text)) for token in span]
            words = _words(text, tokens)
            if words:
                sentences.append(Sentence([w for w, _, _ in words], text=text, offsets=[(a, b) for _, a, b in words]))
    return sentences


def join_sentences(text: str, sentences: Sequence[Sentence]) -> Sentence:
    """One Sentence over all words of ``sentences`` (which point into ``text``, see
    :func:`text_sentences`), their entities re-indexed, and ``sentence_spans`` the character
    ranges of the sentences."""
    words: list[str] = []
    offsets: list[tuple[int, int]] = []
    entities: list[Entity] = []
    spans: list[tuple[int, int]] = []
    for sentence in sentences:
        if not sentence.words:
            continue
        if sentence.offsets is None or sentence.text != text:
            raise ValueError("join_sentences needs sentences with offsets into the joined text")
        shift = len(words)
        entities.extend(replace(e, indices=tuple(i + shift for i in e.indices)) for e in sentence.entities)
        words.extend(sentence.words)
        offsets.extend(sentence.offsets)
        spans.append((sentence.offsets[0][0], sentence.offsets[-1][1]))
    return Sentence(words, entities, text=text, offsets=offsets, sentence_spans=spans)


def sentence_from_text(text: str, language: str = DEFAULT_LANGUAGE) -> Sentence:
    """A Sentence (words, offsets, text) without entities; empty or blank text gives no words."""
    words = tokenize(text, language=language)
    return Sentence(words=[w for w, _, _ in words], text=text, offsets=[(a, b) for _, a, b in words])


def sentence_from_char_entities(
    text: str,
    entities: Sequence[tuple[str, Sequence[tuple[int, int]], float | None]],
    language: str = DEFAULT_LANGUAGE,
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
    boundaries = [offset for _, spans, _ in entities for span in spans for offset in span]
    words = tokenize(text, boundaries=boundaries, language=language)
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
