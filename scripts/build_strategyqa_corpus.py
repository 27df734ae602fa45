"""Convert the derived StrategyQA evidence-sentence file into a passage corpus (JSONL).

    python scripts/build_strategyqa_corpus.py SRC OUT.jsonl

SRC is ``{paragraph_id: {"title": str, "sentences": [str, ...], "source_splits": [...]}}`` (see
``shared/data/strategyqa/SOURCE.md``, "Derived"); every paragraph becomes one passage
``{id: paragraph_id, title, text: the sentences joined by spaces}``, in SRC's order. Paragraphs with
no non-blank sentence are skipped (a passage must have text) and counted. The derived file is for
research use only: write OUT outside the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from knowledge_qa.corpus import Passage, write_corpus
from knowledge_qa.errors import QAInputError
from nagner.common.atomic import check_output_path
from nagner.errors import NagNerInputError


def convert(source: dict[str, Any], path: Path) -> tuple[list[Passage], int]:
    """The passages of a parsed derived-format file and the number of paragraphs skipped as empty.
    Raises QAInputError (naming ``path`` and the paragraph id) for records of the wrong shape."""
    passages: list[Passage] = []
    empty = 0
    for paragraph_id, record in source.items():
        if not isinstance(record, dict):
            raise QAInputError(f"paragraph {paragraph_id!r}: expected an object {{title, sentences}}", path)
        title = record.get("title", "")
        sentences = record.get("sentences")
        if (
            not isinstance(title, str)
            or not isinstance(sentences, list)
            or not all(isinstance(s, str) for s in sentences)
        ):
            raise QAInputError(
                f"paragraph {paragraph_id!r}: 'title' must be a string and 'sentences' a list of strings",
                path,
            )
        # Sentences may carry stray spaces or newlines; a passage is one line of normalised text.
        text = " ".join(" ".join(sentence.split()) for sentence in sentences if sentence.strip())
        if not text:
            empty += 1
            continue
        passages.append(Passage(paragraph_id, title, text))
    return passages, empty


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for bad input, printed without a traceback)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="strategyqa_evidence_sentences.json (derived format)")
    parser.add_argument("output", type=Path, help="passage corpus to write (JSONL)")
    args = parser.parse_args(argv)
    try:
        output = check_output_path(args.output)  # fail before reading 7 MB, not after
        if not args.source.is_file():
            raise QAInputError("source file not found", args.source)
        try:
            source = json.loads(args.source.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise QAInputError(f"not valid JSON ({error.msg})", args.source, error.lineno) from None
        if not isinstance(source, dict):
            raise QAInputError("expected a JSON object {paragraph_id: {title, sentences}}", args.source)
        passages, empty = convert(source, args.source)
        if not passages:
            raise QAInputError("no paragraph has any text; nothing to write", args.source)
        count = write_corpus(passages, output)
    except NagNerInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    titles = len({passage.title for passage in passages})
    characters = sum(len(passage.text) for passage in passages)
    print(f"{count} passages, {titles} titles, {characters} characters written to {output}")
    print(f"{empty} empty paragraphs skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
