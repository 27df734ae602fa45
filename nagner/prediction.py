"""Streaming prediction: lines in, one record per line out, in chunks so memory stays flat.

    lines (file / stdin / texts) ─lazy─▶ Sentences ─chunks of chunk_size─▶ model ─▶ writer

Every input line gives exactly one output sentence, in input order; an empty or blank line
gives a sentence without entities. Input is read only as far as the current chunk, so a 100k
line file costs the memory of one chunk. Output files are written atomically (see
:mod:`nagner.atomic`): on any error no output file appears.

Output formats: ``jsonl`` (one ``{"text", "entities"}`` record a line), ``conll`` (``word TAG``
lines; flat entities only) and ``brat`` (a ``.txt`` and an ``.ann`` file: an output path
``X``, ``X.txt`` or ``X.ann`` all mean the pair ``X.txt`` + ``X.ann``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any, TextIO

from nagner.atomic import atomic_outputs
from nagner.data.example import Sentence
from nagner.data.sentence_writers import (
    BratSentenceWriter,
    ConllSentenceWriter,
    JsonlSentenceWriter,
    SentenceWriter,
)
from nagner.data.text import sentence_from_text, with_offsets
from nagner.errors import NagNerInputError

OUTPUT_FORMATS = ("jsonl", "conll", "brat")
CHUNK_SIZE = 256


def iter_lines(stream: IO[Any], source: str) -> Iterator[str]:
    """Lines of a text or binary stream without their line end (``\\n`` or ``\\r\\n``), read lazily.

    Bytes are decoded as UTF-8 line by line (a leading byte order mark is dropped), so a bad
    byte is reported at its own line. Raises NagNerInputError (``source``, line) for text that is
    not UTF-8, and for a stream without any line (an empty input is taken as a mistake).
    """
    number = 0
    for number, raw in enumerate(stream, start=1):
        if isinstance(raw, bytes):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise NagNerInputError(
                    f"not UTF-8 text: byte {raw[error.start]:#04x} at column {error.start + 1}", source, number
                ) from None
        else:
            line = raw
        if number == 1:
            line = line.removeprefix("\ufeff")
        yield line.removesuffix("\n").removesuffix("\r")
    if number == 0:
        raise NagNerInputError("no input lines (empty input?)", source)


def iter_file_lines(path: str | Path) -> Iterator[str]:
    """Lines of a UTF-8 text file, read lazily; see :func:`iter_lines`. The file is checked
    when this is called, so a missing file fails before any work."""
    path = Path(path)
    if not path.is_file():
        raise NagNerInputError("no such file" if not path.exists() else "not a file", path)

    def lines() -> Iterator[str]:
        with open(path, "rb") as stream:
            yield from iter_lines(stream, str(path))

    return lines()


def iter_stdin_lines() -> Iterator[str]:
    """Lines of standard input as UTF-8 (whatever the locale), read lazily; see :func:`iter_lines`."""
    stream = getattr(sys.stdin, "buffer", sys.stdin)
    return iter_lines(stream, "<stdin>")


def line_sentence(line: str, words: bool = False, source: str | None = None, number: int | None = None) -> Sentence:
    """The Sentence of one input line.

    Raw text is tokenized (the record's text is the line itself, offsets into it). With
    ``words`` the line is a pre-tokenized sentence: words separated by whitespace, and the
    record's text is the words joined by single spaces.
    """
    if words:
        sentence = with_offsets(Sentence(line.split()))
    else:
        sentence = sentence_from_text(line)
    sentence.source, sentence.line = source, number
    return sentence


def predict_stream(
    model: Any,
    lines: Iterable[str],
    words: bool = False,
    source: str | None = None,
    chunk_size: int = CHUNK_SIZE,
    batch_size: int = 32,
    threshold: float | None = None,
) -> Iterator[Sentence]:
    """Sentences of ``lines`` with their predicted entities (scores in ``Entity.score``), in order.

    ``model`` is a `NagNerModel` (anything with ``predict_sentences``). Lines are taken
    ``chunk_size`` at a time and each chunk is yielded before the next is read.
    ``source`` names the input in the sentences (for error messages), their ``line`` is 1-based.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    numbered = enumerate(lines, start=1)
    while True:
        chunk = [line_sentence(line, words, source, number) for number, line in islice(numbered, chunk_size)]
        if not chunk:
            return
        found = model.predict_sentences(chunk, batch_size=batch_size, threshold=threshold)
        for sentence, entities in zip(chunk, found, strict=True):
            sentence.entities = entities
            yield sentence


def output_paths(format: str, output: str | Path) -> list[Path]:
    """The files an output path stands for: itself, or for brat the ``.txt`` and ``.ann`` pair."""
    output = Path(output)
    if format != "brat":
        return [output]
    stem = output.with_suffix("") if output.suffix in (".txt", ".ann") else output
    return [stem.with_name(stem.name + ".txt"), stem.with_name(stem.name + ".ann")]


def _writer(format: str, files: list[TextIO]) -> SentenceWriter:
    if format == "jsonl":
        return JsonlSentenceWriter(files[0])
    if format == "conll":
        return ConllSentenceWriter(files[0])
    return BratSentenceWriter(files[0], files[1])


def write_predictions(
    sentences: Iterable[Sentence], format: str = "jsonl", output: str | Path | None = None
) -> int:
    """Write sentences as they come, to ``output`` (atomically) or to stdout; returns how many.

    Raises NagNerInputError for an unknown format, brat without an output path (brat is two
    files), and what the writer refuses (a nested entity in CoNLL); then no output file appears.
    """
    if format not in OUTPUT_FORMATS:
        raise NagNerInputError(f"unknown output format {format!r}; expected {', '.join(OUTPUT_FORMATS)}")
    count = 0
    if output is None:
        if format == "brat":
            raise NagNerInputError("brat output is two files (.txt and .ann): give an output path")
        writer = _writer(format, [sys.stdout])
        for sentence in sentences:
            writer.write(sentence)
            sys.stdout.flush()  # a reader at the other end of a pipe gets each record as it comes
            count += 1
        return count
    with atomic_outputs(output_paths(format, output)) as files:
        writer = _writer(format, files)
        for sentence in sentences:
            writer.write(sentence)
            count += 1
    return count
