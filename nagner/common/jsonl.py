"""JSON records read with the line each starts on, and JSON lines written atomically.

Every reader of JSON data in the project goes through here, so that a bad record is reported the
same way everywhere: ``file:line: bad JSON: <what> (column N)``. Files are either JSON lines (one
value per line, blank lines skipped) or one JSON array of records; :func:`iter_json_records` tells
them apart by the first character, so a ``.json`` file holding JSON lines still reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nagner.common.atomic import atomic_outputs
from nagner.common.errors import InputError
from nagner.common.textfile import check_file, numbered_lines, read_text

_SPACE = " \t\r\n\ufeff"


def _bad_json(error: json.JSONDecodeError, source: str, line: int) -> InputError:
    return InputError(f"bad JSON: {error.msg} (column {error.colno})", source, line)


def json_line_records(lines: Iterable[tuple[int, str]], source: str) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line of ``(line number, text)`` pairs."""
    for number, line in lines:
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise _bad_json(error, source, number) from None


def json_array_records(text: str, source: str) -> Iterator[tuple[int, Any]]:
    """``(line, value)`` for each element of the JSON array that ``text`` holds, decoded one element
    at a time so that every record knows the line it starts on."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line = text.count("\n", 0, pos) + 1

    def skip_space(pos: int, line: int) -> tuple[int, int]:
        while pos < len(text) and text[pos] in _SPACE:
            line += text[pos] == "\n"
            pos += 1
        return pos, line

    pos, line = skip_space(pos, line)
    if text.startswith("]", pos):
        return
    while True:
        try:
            record, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as error:
            raise _bad_json(error, source, error.lineno) from None
        yield line, record
        line += text.count("\n", pos, end)
        pos, line = skip_space(end, line)
        if text.startswith("]", pos):
            break
        if not text.startswith(",", pos):
            raise InputError("bad JSON: expected ',' or ']' after a record", source, line)
        pos, line = skip_space(pos + 1, line)
    if text[pos + 1 :].strip(_SPACE):
        raise InputError("bad JSON: extra data after the closing ']'", source, line)


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank line of a JSON lines file, read lazily. InputError
    for a missing file, bad JSON, and a NUL or non-UTF-8 byte (see `nagner.common.textfile`)."""
    path = check_file(path)
    return json_line_records(numbered_lines(path), str(path))


def iter_json_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line, record)`` of a JSON lines file or of a file holding one JSON array (told apart by
    its first character other than white space); see :func:`iter_json_lines`."""
    path = check_file(path)
    for _, line in numbered_lines(path):
        if line.strip(_SPACE):
            if line.strip(_SPACE).startswith("["):
                return json_array_records(read_text(path), str(path))
            break
    return json_line_records(numbered_lines(path), str(path))


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write ``records`` as JSON lines (UTF-8, non-ASCII kept as is) atomically: the file appears
    whole or not at all. Returns the count."""
    count = 0
    with atomic_outputs([path]) as (handle,):
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
