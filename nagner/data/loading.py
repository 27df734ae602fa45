"""One entry point that reads any supported annotation file into Sentences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nagner.common.jsonl import iter_json_records
from nagner.data.conll import read_conll
from nagner.data.example import Sentence
from nagner.data.jsonl import read_jsonl
from nagner.data.w2ner import read_w2ner
from nagner.errors import NagNerInputError

READERS = {"conll": read_conll, "w2ner": read_w2ner, "jsonl": read_jsonl}


def _first_record(path: Path) -> tuple[Any, int]:
    """The first record of a JSON array or JSON lines file, and its line."""
    for line, record in iter_json_records(path):
        return record, line
    raise NagNerInputError("no records found (empty file?)", path)


def detect_format(path: str | Path) -> str:
    """"w2ner" or "jsonl" for ``.json`` / ``.jsonl`` files (by the first record's keys:
    ``sentence`` or ``text``), "conll" for any other file."""
    path = Path(path)
    if path.suffix.lower() not in (".json", ".jsonl"):
        return "conll"
    record, line = _first_record(path)
    if isinstance(record, dict) and "sentence" in record:
        return "w2ner"
    if isinstance(record, dict) and "text" in record:
        return "jsonl"
    raise NagNerInputError(
        "cannot tell the format: the first record has neither 'sentence' (W2NER) nor 'text' (jsonl)",
        path,
        line,
    )


HUB_PREFIX = "hf:"


def parse_hub_spec(spec: str) -> tuple[str, str | None, str]:
    """``hf:NAME:SPLIT`` or ``hf:NAME:CONFIG:SPLIT`` → (name, config or None, split)."""
    parts = spec[len(HUB_PREFIX) :].split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise NagNerInputError(
            f"a hub dataset is written hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT (e.g. hf:conll2003:train), got {spec!r}"
        )
    return parts[0], (parts[1] if len(parts) == 3 else None), parts[-1]


def read_sentences(path: str | Path, format: str = "auto", **kwargs: Any) -> list[Sentence]:
    """Read an annotation file (or a hub dataset) as Sentences.

    ``format``: "conll", "w2ner", "jsonl" or "auto" (see :func:`detect_format`). ``kwargs`` go to
    the reader (``scheme``, ``tag_columns`` for CoNLL; ``language``, the tokenizer's, is used for
    jsonl's raw text and ignored for formats that come as words). A ``path`` of the form ``hf:NAME:SPLIT``
    or ``hf:NAME:CONFIG:SPLIT`` loads a token-classification dataset (``tokens`` + ``ner_tags``
    columns) through ``datasets.load_dataset`` (see :func:`nagner.data.hub.load_hub_dataset`).
    Raises NagNerInputError for a missing file, an unknown format and any problem in the file.
    """
    if isinstance(path, str) and path.startswith(HUB_PREFIX):
        from nagner.data.hub import load_hub_dataset

        name, config_name, split = parse_hub_spec(path)
        return load_hub_dataset(name, split, config_name)
    path = Path(path)
    if not path.is_file():
        raise NagNerInputError("no such file" if not path.exists() else "not a file", path)
    if format == "auto":
        format = detect_format(path)
    if format not in READERS:
        raise NagNerInputError(f"unknown format {format!r}; expected auto, {', '.join(READERS)}", path)
    language = kwargs.pop("language", None)
    if language is not None and format == "jsonl":
        kwargs["language"] = language  # only raw text is tokenized; other formats come as words
    return READERS[format](path, **kwargs)


def read_annotations(
    path: str, format: str = "auto", tag_columns: list[int] | None = None, language: str | None = None
) -> list[Sentence]:
    """:func:`read_sentences` for the CLIs: ``tag_columns`` (CoNLL only) is refused, with a clear
    NagNerInputError, for any other format, a hub dataset included."""
    if tag_columns is None:
        return read_sentences(path, format, language=language)
    if path.startswith(HUB_PREFIX):
        format = "a hub dataset"
    elif format == "auto":
        file = Path(path)
        if not file.is_file():
            raise NagNerInputError("no such file" if not file.exists() else "not a file", file)
        format = detect_format(file)
    if format != "conll":
        raise NagNerInputError(f"--tag-columns is for CoNLL files, but this is {format}", path)
    return read_sentences(path, "conll", tag_columns=tag_columns)
