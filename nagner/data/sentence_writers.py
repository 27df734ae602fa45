"""Writers that take one sentence at a time, for output that streams (jsonl, CoNLL, brat).

Each writes to already-open text files, so the caller decides where the text goes (a file,
stdout, a temporary file renamed at the end). Every sentence gives output, an empty one too.
"""

from __future__ import annotations

import json
from typing import Protocol, TextIO

from nagner.data.example import Sentence, entity_kind
from nagner.data.jsonl import sentence_record
from nagner.data.tags import spans_to_tags
from nagner.data.text import with_offsets
from nagner.errors import NagNerInputError


class SentenceWriter(Protocol):
    """Something that writes sentences one by one."""

    def write(self, sentence: Sentence) -> None:
        """Write one sentence with its entities."""


class JsonlSentenceWriter:
    """One :func:`~nagner.data.jsonl.sentence_record` JSON object per line (non-ASCII kept as is)."""

    def __init__(self, out: TextIO):
        self.out = out

    def write(self, sentence: Sentence) -> None:
        """Write the sentence's record line."""
        self.out.write(json.dumps(sentence_record(sentence), ensure_ascii=False) + "\n")


class ConllSentenceWriter:
    """``word TAG`` lines (IOB2 or BIOES), each sentence followed by a blank line (a text of several
    sentences, ``Sentence.sentence_spans``, gives a block per sentence).

    CoNLL tags hold flat entities only: a nested or discontinuous entity raises NagNerInputError
    at the sentence's source and line (when it was read from a file), else at ``name`` and the
    sentence's number. A sentence without words gives just its blank line (CoNLL readers skip it:
    the format cannot hold an empty sentence).
    """

    def __init__(self, out: TextIO, scheme: str = "iob2", name: str | None = None):
        self.out = out
        self.scheme = scheme
        self.name = name
        self.count = 0  # sentences written so far

    def write(self, sentence: Sentence) -> None:
        """Write the sentence's rows and the blank line after them."""
        self.count += 1
        unique = set(sentence.entities)
        for entity in sorted(unique):
            kind = entity_kind(entity, unique)
            if kind != "flat":
                raise self._error(
                    sentence,
                    f"{kind} entity {entity.type} {sentence.entity_text(entity)!r}: CoNLL tags hold flat "
                    "entities only; write jsonl or brat instead",
                )
        for word in sentence.words:
            if not word or any(ch.isspace() for ch in word):
                raise self._error(sentence, f"word {word!r} is empty or contains whitespace, which a CoNLL column cannot hold")
        spans = [(entity.type, entity.indices[0], entity.indices[-1] + 1) for entity in unique]
        tags = spans_to_tags(spans, len(sentence.words), self.scheme)
        rows = [f"{word} {tag}\n" for word, tag in zip(sentence.words, tags, strict=True)]
        for begin, end in _sentence_word_ranges(sentence):
            self.out.write("".join(rows[begin:end]) + "\n")

    def _error(self, sentence: Sentence, message: str) -> NagNerInputError:
        if sentence.source is not None:
            return NagNerInputError(message, sentence.source, sentence.line)
        return NagNerInputError(f"sentence {self.count}: {message}", self.name)


def _sentence_word_ranges(sentence: Sentence) -> list[tuple[int, int]]:
    """``[begin, end)`` word ranges of the sentences of a text (one range when it is one sentence)."""
    if not sentence.sentence_spans or sentence.offsets is None or len(sentence.sentence_spans) < 2:
        return [(0, len(sentence.words))]
    ranges, begin = [], 0
    for _, span_end in sentence.sentence_spans:
        end = begin
        while end < len(sentence.words) and sentence.offsets[end][1] <= span_end:
            end += 1
        ranges.append((begin, end))
        begin = end
    return ranges


class BratSentenceWriter:
    """brat standoff: each sentence one line of the ``.txt`` document, its entities ``T`` lines of the
    ``.ann`` (``T1<TAB>TYPE 0 5;10 15<TAB>fragment texts``; fragments of a discontinuous entity are
    separated by ``;``). Line breaks inside a sentence's text become spaces (offsets unchanged).
    """

    def __init__(self, txt: TextIO, ann: TextIO):
        self.txt = txt
        self.ann = ann
        self.base = 0  # character offset of the next sentence in the document
        self.count = 0  # T lines written so far

    def write(self, sentence: Sentence) -> None:
        """Write the sentence's line and its entities' T lines."""
        sentence = with_offsets(sentence)
        text = (sentence.text or "").replace("\r", " ").replace("\n", " ")
        for entity in sentence.entities:
            spans = sentence.char_spans(entity)
            where = ";".join(f"{self.base + start} {self.base + end}" for start, end in spans)
            surface = " ".join(text[start:end] for start, end in spans)
            self.count += 1
            self.ann.write(f"T{self.count}\t{entity.type} {where}\t{surface}\n")
        self.txt.write(text + "\n")
        self.base += len(text) + 1
