"""brat standoff: a ``.txt`` document (one sentence a line) and its ``.ann`` text-bound entities."""

from __future__ import annotations

from pathlib import Path

from nagner.common.atomic import atomic_outputs
from nagner.common.textfile import check_file, numbered_lines, read_text
from nagner.data.example import Sentence
from nagner.data.sentence_writers import BratSentenceWriter
from nagner.data.text import sentence_from_char_entities
from nagner.errors import NagNerInputError


def write_brat(sentences: list[Sentence], txt_path: str | Path, ann_path: str | Path) -> None:
    """Write the sentences as one document, one sentence a line, and their entities as
    ``T1<TAB>TYPE 0 5;10 15<TAB>fragment texts`` lines (fragments of a discontinuous entity are
    separated by ``;``). Newlines inside a sentence's text become spaces (offsets unchanged). Both
    files appear whole or not at all.
    """
    with atomic_outputs([txt_path, ann_path]) as (txt, ann):
        writer = BratSentenceWriter(txt, ann)
        for sentence in sentences:
            writer.write(sentence)


def read_brat(txt_path: str | Path, ann_path: str | Path) -> list[Sentence]:
    """Sentences (the lines of the ``.txt``) with the ``T`` entities of the ``.ann``.

    Other annotation lines (relations, events, attributes, notes) are ignored. Raises
    NagNerInputError with the ``.ann`` line for a malformed ``T`` line or an entity that
    leaves the document or crosses a line break.
    """
    text = read_text(txt_path)
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    starts, pos = [], 0
    for line in lines:
        starts.append(pos)
        pos += len(line) + 1
    per_line: list[list[tuple[str, list[tuple[int, int]], None]]] = [[] for _ in lines]
    source = str(ann_path)
    for number, raw in numbered_lines(check_file(ann_path)):
        if not raw.startswith("T"):
            continue
        fields = raw.split("\t")
        try:
            type_, where = fields[1].split(" ", 1)
            spans = [(int(a), int(b)) for a, b in (part.split() for part in where.split(";"))]
        except (IndexError, ValueError):
            raise NagNerInputError(
                "expected 'T<n><TAB>TYPE start end[;start end...]<TAB>text'", source, number
            ) from None
        index = next((i for i in range(len(lines) - 1, -1, -1) if starts[i] <= spans[0][0]), None)
        if index is None:
            raise NagNerInputError("entity outside the document", source, number)
        begin, end = starts[index], starts[index] + len(lines[index])
        if not all(begin <= a < b <= end for a, b in spans):
            raise NagNerInputError(
                f"entity spans {where} leave line {index + 1} of {txt_path} ({begin}-{end})", source, number
            )
        per_line[index].append((type_, [(a - begin, b - begin) for a, b in spans], None))
    sentences = []
    for index, (line, entities) in enumerate(zip(lines, per_line, strict=True)):
        try:
            sentence = sentence_from_char_entities(line, entities)
        except ValueError as error:
            raise NagNerInputError(str(error), txt_path, index + 1) from None
        sentence.source, sentence.line = str(txt_path), index + 1
        sentences.append(sentence)
    return sentences
