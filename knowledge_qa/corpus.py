"""The knowledge source: any JSONL file of passages ``{"id", "title", "text"}``, one per line.

`read_corpus` reads a corpus into memory (a list of `Passage`). For corpora too large for that,
`iter_corpus` checks and yields passages one at a time, `write_arrow_corpus` writes them to an Arrow
IPC file in record batches, and `ArrowPassages` reads that file memory-mapped: a `Sequence[Passage]`
that makes a `Passage` only for the rows asked for (index folders store their corpus this way). Arrow
through ``pyarrow``, the columnar format ``datasets`` itself stores corpora in.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import overload

from knowledge_qa.errors import QAInputError
from nagner.common.jsonl import iter_json_lines, write_jsonl


@dataclass(frozen=True)
class Passage:
    """One retrievable unit of knowledge. ``title`` names its document (two-level search groups
    passages by title)."""

    id: str
    title: str
    text: str


def read_corpus(path: str | Path) -> list[Passage]:
    """All passages of a JSONL corpus, in file order (checked as in `iter_corpus`)."""
    return list(iter_corpus(path))


def iter_corpus(path: str | Path) -> Iterator[Passage]:
    """The passages of a JSONL corpus one at a time, in file order.

    Every non-blank line must be an object with string fields ``id``, ``title`` (may be empty)
    and a non-empty ``text``; ids must be unique. Anything else raises QAInputError naming the file
    and line. An empty corpus is an error too: there is nothing to retrieve from. (Only the ids are
    kept in memory, for the uniqueness check.)
    """
    path = Path(path)
    if not path.is_file():
        raise QAInputError("corpus file not found", path)
    count = 0
    seen: dict[str, int] = {}
    for line_number, record in iter_json_lines(path):
        if not isinstance(record, dict):
            raise QAInputError(f"expected a JSON object {{id, title, text}}, found {type(record).__name__}", path, line_number)
        for field in ("id", "text"):
            if field not in record:
                raise QAInputError(f"passage has no {field!r} field (expected id, title, text)", path, line_number)
        values = {field: record.get(field, "") for field in ("id", "title", "text")}
        if isinstance(values["id"], int) and not isinstance(values["id"], bool):
            values["id"] = str(values["id"])
        for field, value in values.items():
            if not isinstance(value, str):
                raise QAInputError(f"field {field!r} must be a string, found {type(value).__name__}", path, line_number)
        if not values["text"].strip():
            raise QAInputError(f"passage {values['id']!r} has an empty text", path, line_number)
        if values["id"] in seen:
            raise QAInputError(f"duplicate passage id {values['id']!r} (first on line {seen[values['id']]})", path, line_number)
        seen[values["id"]] = line_number
        count += 1
        yield Passage(**values)
    if not count:
        raise QAInputError("the corpus is empty; expected at least one passage {id, title, text}", path)


def write_corpus(passages: Iterable[Passage], path: str | Path) -> int:
    """Write passages as JSONL (atomically: the file appears whole or not at all); returns the count."""
    return write_jsonl((asdict(passage) for passage in passages), path)


def iter_titles(passages: Iterable[Passage]) -> Iterator[tuple[str, list[Passage]]]:
    """(title, passages of that title) in order of first appearance: the documents of two-level search."""
    groups: dict[str, list[Passage]] = {}
    for passage in passages:
        groups.setdefault(passage.title, []).append(passage)
    yield from groups.items()


ARROW_BATCH = 10_000  # passages per Arrow record batch


def write_arrow_corpus(passages: Iterable[Passage], path: str | Path) -> int:
    """Write ``passages`` to an Arrow IPC file (columns id, title, text), batch by batch, atomically
    (a temporary file renamed into place); returns the count."""
    import pyarrow as pa

    path = Path(path)
    schema = pa.schema([("id", pa.string()), ("title", pa.string()), ("text", pa.string())])
    partial = path.with_name(f".{path.name}.partial")
    count = 0
    try:
        with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            batch: list[Passage] = []
            for passage in passages:
                batch.append(passage)
                if len(batch) == ARROW_BATCH:
                    writer.write_batch(_record_batch(batch, schema))
                    count += len(batch)
                    batch = []
            if batch:
                writer.write_batch(_record_batch(batch, schema))
                count += len(batch)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return count


def _record_batch(passages: list[Passage], schema):
    import pyarrow as pa

    return pa.record_batch([[p.id for p in passages], [p.title for p in passages], [p.text for p in passages]], schema=schema)


class ArrowPassages(Sequence[Passage]):
    """The passages of an Arrow corpus file (`write_arrow_corpus`), memory-mapped: the file's pages
    are read when rows are asked for, and a `Passage` is made per row asked for."""

    def __init__(self, path: str | Path):
        import pyarrow as pa

        self.path = Path(path)
        if not self.path.is_file():
            raise QAInputError("corpus file not found", self.path)
        try:
            self._table = pa.ipc.open_file(pa.memory_map(str(self.path), "r")).read_all()
        except (pa.ArrowInvalid, OSError) as error:
            raise QAInputError(f"not an Arrow corpus file ({error})", self.path) from None
        if self._table.column_names != ["id", "title", "text"]:
            raise QAInputError(f"expected columns id, title, text, found {', '.join(self._table.column_names)}", self.path)
        self._columns = [self._table.column(name) for name in ("id", "title", "text")]

    def __len__(self) -> int:
        return self._table.num_rows

    @overload
    def __getitem__(self, index: int) -> Passage: ...

    @overload
    def __getitem__(self, index: slice) -> list[Passage]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            rows = self._table.slice(start, max(0, stop - start)).to_pydict()
            return [Passage(*values) for values in zip(rows["id"], rows["title"], rows["text"])]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"passage {index} of {len(self)}")
        return Passage(*(column[index].as_py() for column in self._columns))

    def __iter__(self) -> Iterator[Passage]:
        for start in range(0, len(self), ARROW_BATCH):
            yield from self[start : start + ARROW_BATCH]
