"""CoNLL-style column files: one word per line, tag columns, blank line between sentences."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from nagner.common.atomic import atomic_outputs
from nagner.common.textfile import check_file, numbered_lines
from nagner.data.example import Entity, Sentence
from nagner.data.sentence_writers import ConllSentenceWriter
from nagner.data.tags import parse_tag, tags_to_spans
from nagner.errors import NagNerInputError


def _columns(line: str) -> list[str]:
    # A line of only whitespace (tabs included) is blank. Tab-separated files may hold tokens
    # with spaces; otherwise any whitespace separates.
    if not line.strip():
        return []
    if "\t" in line:
        return [column.strip() for column in line.strip().split("\t")]
    return line.split()


def _default_tag_columns(n_columns: int) -> list[int]:
    # CoNLL-2003 (token POS chunk NER): only the last column holds entities.
    return [n_columns - 1] if n_columns >= 4 else list(range(1, n_columns))


def _sentence(
    rows: list[tuple[int, list[str]]], tag_columns: list[int], scheme: str, path: str
) -> Sentence:
    entities: list[Entity] = []
    for column in tag_columns:
        tags = [columns[column] for _, columns in rows]
        try:
            spans = tags_to_spans(tags, scheme)
        except ValueError as error:
            raise NagNerInputError(f"column {column + 1}: {error}", path, rows[0][0]) from None
        for type_, start, end in spans:
            entity = Entity.from_span(type_, start, end)
            if entity not in entities:
                entities.append(entity)
    entities.sort(key=lambda entity: (entity.start, -len(entity.indices), entity.type))
    return Sentence(words=[columns[0] for _, columns in rows], entities=entities, source=path, line=rows[0][0])


def iter_conll(
    path: str | Path, scheme: str = "auto", tag_columns: list[int] | None = None
) -> Iterator[Sentence]:
    """Sentences of a CoNLL-style file, read lazily.

    Columns are tab- or whitespace-separated, the first is the word. A blank line (also one of
    only whitespace or U+FEFF) ends a sentence; ``-DOCSTART-`` lines are skipped; a byte order
    mark and CRLF line ends are fine; IOB1, IOB2, BIOES and BILOU tags all read (see
    :func:`nagner.data.tags.tags_to_spans`). ``tag_columns`` are 0-based
    column numbers holding tags; each is chunked separately (several columns = nesting levels,
    as in GermEval 2014) and the entities are united. By default: the last column when a row
    has 4 or more columns (CoNLL-2003: token POS chunk NER), else every column after the first.
    Raises NagNerInputError (with file and line) for a row with another column count than the
    first row, an unknown tag, or a file without sentences.
    """
    source = str(check_file(path))
    n_columns: int | None = None
    columns_used: list[int] = []
    rows: list[tuple[int, list[str]]] = []
    found = False
    for number, line in numbered_lines(path):
        columns = _columns(line.replace("\ufeff", ""))
        if not columns or columns[0] == "-DOCSTART-":
            if rows:
                found = True
                yield _sentence(rows, columns_used, scheme, source)
                rows = []
            continue
        if n_columns is None:
            n_columns = len(columns)
            if n_columns < 2:
                raise NagNerInputError(
                    f"expected a word and at least one tag column, found {n_columns} column",
                    source,
                    number,
                )
            columns_used = _default_tag_columns(n_columns) if tag_columns is None else list(tag_columns)
            bad = [c for c in columns_used if not 1 <= c < n_columns]
            if bad or not columns_used:
                raise NagNerInputError(
                    f"tag columns {columns_used} do not fit rows of {n_columns} columns "
                    "(0-based; column 0 is the word)",
                    source,
                    number,
                )
        elif len(columns) != n_columns:
            raise NagNerInputError(
                f"expected {n_columns} columns like the first row, found {len(columns)}: {line.strip()!r}",
                source,
                number,
            )
        for column in columns_used:
            try:
                parse_tag(columns[column])
            except ValueError as error:
                raise NagNerInputError(f"column {column + 1}: {error}", source, number) from None
        rows.append((number, columns))
    if rows:
        found = True
        yield _sentence(rows, columns_used, scheme, source)
    if not found:
        raise NagNerInputError("no sentences found (empty file?)", source)


def read_conll(path: str | Path, scheme: str = "auto", tag_columns: list[int] | None = None) -> list[Sentence]:
    """All sentences of a CoNLL-style file; see :func:`iter_conll`."""
    return list(iter_conll(path, scheme=scheme, tag_columns=tag_columns))


def write_conll(sentences: Iterable[Sentence], path: str | Path, scheme: str = "iob2") -> None:
    """Write ``word TAG`` lines, a blank line after each sentence (`ConllSentenceWriter`), into a
    file that appears whole or not at all.

    CoNLL holds flat entities only: a nested or discontinuous entity raises NagNerInputError
    naming the sentence; write jsonl or brat for those.
    """
    with atomic_outputs([path]) as (out,):
        writer = ConllSentenceWriter(out, scheme, name=str(path))
        for sentence in sentences:
            writer.write(sentence)
