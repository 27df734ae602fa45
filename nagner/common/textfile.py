"""Reading UTF-8 text files so that every problem names its file and line.

Every reader goes through here: a leading byte order mark is dropped; lines come without their
``\\n`` or ``\\r\\n``, whole texts keep their line ends (offsets into them are offsets into the
file's text); and a byte that is not UTF-8 or a NUL byte (a binary file) raises InputError
with the file, the line and the column, instead of a UnicodeDecodeError.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from nagner.common.errors import InputError

BOM = "\ufeff"


def decode_line(raw: bytes, source: str, number: int) -> str:
    """One line's bytes as text; InputError at ``source:number`` for a NUL or non-UTF-8 byte."""
    nul = raw.find(b"\0")
    if nul >= 0:
        raise InputError(
            f"a NUL byte at column {nul + 1}: this looks like a binary file, not UTF-8 text", source, number
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            f"not UTF-8 text: byte {raw[error.start]:#04x} at column {error.start + 1}", source, number
        ) from None


def iter_lines(stream: IO[Any], source: str) -> Iterator[str]:
    """Lines of a text or binary stream without their line end (``\\n`` or ``\\r\\n``), read lazily.

    Bytes are decoded line by line (see :func:`decode_line`), so a bad byte is reported at its
    own line; a leading byte order mark is dropped. Raises InputError (``source``, line)
    for text that is not UTF-8, and for a stream without any line (an empty input is taken as a
    mistake).
    """
    empty = True
    for _, line in _numbered(stream, source):
        empty = False
        yield line
    if empty:
        raise InputError("no input lines (empty input?)", source)


def _numbered(stream: IO[Any], source: str) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a text or binary stream: bytes decoded line by line, a leading
    byte order mark dropped, ``\\n`` / ``\\r\\n`` removed."""
    for number, raw in enumerate(stream, start=1):
        line = decode_line(raw, source, number) if isinstance(raw, bytes) else raw
        if number == 1:
            line = line.removeprefix(BOM)
        yield number, line.removesuffix("\n").removesuffix("\r")


def check_file(path: str | Path) -> Path:
    """``path`` as a Path; InputError when it is missing or not a file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file" if not path.exists() else "not a file", path)
    return path


def iter_file_lines(path: str | Path) -> Iterator[str]:
    """Lines of a UTF-8 text file, read lazily; see :func:`iter_lines`. The file is checked
    when this is called, so a missing file fails before any work."""
    path = check_file(path)

    def lines() -> Iterator[str]:
        with open(path, "rb") as stream:
            yield from iter_lines(stream, str(path))

    return lines()


def numbered_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file, line ends removed, read lazily; an empty file
    gives nothing (the readers say what they expected instead)."""
    with open(path, "rb") as stream:
        yield from _numbered(stream, str(path))


def read_text(path: str | Path, source: str | None = None) -> str:
    """A whole UTF-8 file as text, a leading byte order mark dropped and line ends kept (character
    offsets into it are offsets into the file's text); InputError with the line of a NUL or
    non-UTF-8 byte. ``path`` None or "-" reads standard input."""
    if path is None or str(path) == "-":
        stream = getattr(sys.stdin, "buffer", sys.stdin)
        data, source = stream.read(), source or "<stdin>"
        if isinstance(data, str):
            return data.removeprefix(BOM)
    else:
        data, source = check_file(path).read_bytes(), source or str(path)
    data = data.removeprefix(BOM.encode("utf-8"))
    try:
        bad = data.index(b"\0")
    except ValueError:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            bad = error.start
    start = data.rfind(b"\n", 0, bad) + 1
    end = data.find(b"\n", bad)
    decode_line(data[start : end if end >= 0 else len(data)], source, data.count(b"\n", 0, bad) + 1)
    raise AssertionError("unreachable: decode_line raises for the same bytes")
