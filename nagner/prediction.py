"""Streaming prediction: texts in, one record per text out, in chunks so memory stays flat.

    texts (lines of a file / stdin / arguments, or one whole document)
        ─lazy─▶ sentences (spaCy rules, see nagner.data.text) ─chunks of chunk_size─▶ model
        ─▶ one record per text, offsets into it ─▶ writer

Every input text gives exactly one output record, in input order; an empty or blank line gives
a record without entities. Input is read only as far as the current chunk, so a 100k line file
costs the memory of one chunk. Output files are written atomically (see :mod:`nagner.common.atomic`):
on any error no output file appears.

Output formats: ``jsonl`` (one ``{"text", "entities", "sentences"}`` record a line), ``conll``
(``word TAG`` lines, a block per sentence; flat entities only), ``html`` (a self-contained page
that draws nested and discontinuous entities, see :class:`nagner.visualize.HtmlPageWriter`),
``text`` (each text with ``^^^ TYPE`` marks under its entities, for a terminal) and ``brat`` (a ``.txt`` and an ``.ann`` file: an output path ``X``, ``X.txt`` or ``X.ann`` all mean
the pair ``X.txt`` + ``X.ann``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from nagner.common.atomic import atomic_outputs
from nagner.common.textfile import iter_lines, read_text
from nagner.data.example import Sentence
from nagner.data.sentence_writers import (
    BratSentenceWriter,
    ConllSentenceWriter,
    JsonlSentenceWriter,
    SentenceWriter,
)
from nagner.data.text import DEFAULT_LANGUAGE, join_sentences, text_sentences, with_offsets
from nagner.errors import NagNerInputError

OUTPUT_FORMATS = ("jsonl", "conll", "brat", "html", "text")
CHUNK_SIZE = 256


def iter_stdin_lines() -> Iterator[str]:
    """Lines of standard input as UTF-8 (whatever the locale), read lazily; see :func:`iter_lines`."""
    stream = getattr(sys.stdin, "buffer", sys.stdin)
    return iter_lines(stream, "<stdin>")


def read_document(path: str | Path | None) -> tuple[str, str]:
    """A whole UTF-8 file (standard input for None or "-") as one text, and the name errors give
    it; see :func:`nagner.common.textfile.read_text`. Offsets of predictions point into this text."""
    source = "<stdin>" if path is None or str(path) == "-" else str(path)
    text = read_text(path, source)
    if not text.strip():
        raise NagNerInputError("no text (empty document?)", source)
    return text, source


def line_sentences(line: str, words: bool = False, language: str = DEFAULT_LANGUAGE) -> list[Sentence]:
    """The sentences of one input text, pointing into it (see :func:`nagner.data.text.text_sentences`).

    Raw text is split into sentences and words (the record's text is the line itself, offsets
    into it). With ``words`` the line is one pre-tokenized sentence: words separated by
    whitespace, and the record's text is the words joined by single spaces.
    """
    if words:
        sentence = with_offsets(Sentence(line.split()))
        return [sentence] if sentence.words else []
    return text_sentences(line, language)


def line_sentence(
    line: str, words: bool = False, source: str | None = None, number: int | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> Sentence:
    """The record of one input text without entities: all words of its sentences (see
    :func:`line_sentences`), ``sentence_spans`` where they are, ``source`` and ``line`` set."""
    return _text_record(line, line_sentences(line, words, language), words, source, number)


def _text_record(
    line: str, sentences: list[Sentence], words: bool, source: str | None, number: int | None
) -> Sentence:
    """The sentences of one input text joined into its record (see :func:`line_sentences` for
    the record's text in ``words`` mode)."""
    record = join_sentences(" ".join(line.split()) if words else line, sentences)
    record.source, record.line = source, number
    return record


def predict_stream(
    model: Any,
    lines: Iterable[str],
    words: bool = False,
    source: str | None = None,
    chunk_size: int = CHUNK_SIZE,
    batch_size: int = 32,
    threshold: float | None = None,
    language: str | None = None,
    progress: Any = None,
) -> Iterator[Sentence]:
    """One Sentence per input text with its predicted entities (scores in ``Entity.score``), in order.

    Each text is split into sentences (``Sentence.sentence_spans``) that are predicted on their
    own and joined again, so offsets point into the text. ``model`` is a `NagNerModel` (anything
    with ``predict_sentences`` and a ``config``). Sentences are taken ``chunk_size`` at a time
    and every text completed by a chunk is yielded before more input is read, so memory stays
    that of one chunk (plus one text). ``language``: the tokenizer's (default: the model's
    ``config.text_language``). ``progress``: something with ``update(n)`` (a tqdm bar), told of
    every predicted sentence. ``source`` names the input in the records (for error messages),
    their ``line`` is the 1-based text number.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if language is None:
        language = getattr(getattr(model, "config", None), "text_language", DEFAULT_LANGUAGE)

    def sentence_parts() -> Iterator[tuple[int, str, Sentence | None, bool]]:
        """(number, text, sentence or None for a text without words, is the text's last part)"""
        for number, line in enumerate(lines, start=1):
            sentences = line_sentences(line, words, language)
            for sentence in sentences:
                sentence.source, sentence.line = source, number
            for k, sentence in enumerate(sentences or [None]):
                yield number, line, sentence, k == max(len(sentences), 1) - 1

    parts = sentence_parts()
    pending: list[Sentence] = []
    while True:
        chunk = list(islice(parts, chunk_size))
        if not chunk:
            return
        sentences = [sentence for _, _, sentence, _ in chunk if sentence is not None]
        found = model.predict_sentences(sentences, batch_size=batch_size, threshold=threshold)
        for sentence, entities in zip(sentences, found, strict=True):
            sentence.entities = entities
        if progress is not None:
            progress.update(len(sentences))
        for number, text, sentence, last in chunk:
            if sentence is not None:
                pending.append(sentence)
            if last:
                yield _text_record(text, pending, words, source, number)
                pending = []


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
    if format in ("html", "text"):
        from nagner.visualize import HtmlPageWriter, TextWriter

        return HtmlPageWriter(files[0]) if format == "html" else TextWriter(files[0])
    return BratSentenceWriter(files[0], files[1])


def _close(writer: SentenceWriter) -> None:
    close = getattr(writer, "close", None)  # a page writer ends its document
    if close is not None:
        close()


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
        _close(writer)
        return count
    with atomic_outputs(output_paths(format, output)) as files:
        writer = _writer(format, files)
        for sentence in sentences:
            writer.write(sentence)
            count += 1
        _close(writer)
    return count
