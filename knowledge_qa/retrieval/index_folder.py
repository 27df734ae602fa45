"""Index folders: what a saved retriever's folder holds, written crash-safely and read back checked.

An index folder holds

* ``retriever.json``: ``{"format": 2, "kind": ..., "passages": N, "corpus_sha256": ..., ...settings}``,
  written last;
* ``passages.arrow``: the corpus the index was built from (`write_arrow_corpus`), read back
  memory-mapped (`ArrowPassages`), so a loaded index does not hold its corpus in Python objects
  (format 1 folders, with ``passages.jsonl``, still load);
* the kind's own files (``bm25/`` for BM25, ``embeddings.npy`` for dense, ``documents/`` and
  ``passages/`` sub-indexes for two-level search).

Saving writes everything into a hidden temporary folder next to the target and renames it into place
only when complete, so a crash leaves either the old index or the new one, never half of one.
Loading checks that the stored corpus is still the one the index was built from (by its hash).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from knowledge_qa.corpus import ArrowPassages, Passage, read_corpus, write_arrow_corpus
from knowledge_qa.errors import QAInputError
from nagner.common.atomic import atomic_folder, atomic_outputs

SETTINGS_FILE = "retriever.json"
PASSAGES_FILE = "passages.arrow"
OLD_PASSAGES_FILE = "passages.jsonl"  # format 1
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)


class IndexFiles(Protocol):
    """What `save_index` needs of a retriever: its corpus, its settings and a writer of its own files."""

    passages: Sequence[Passage]

    def index_settings(self) -> dict[str, Any]:
        """JSON-able settings, ``kind`` included, stored in retriever.json."""
        ...

    def write_index_files(self, directory: Path) -> None:
        """Write the kind's own files into the (existing, empty but for the corpus) ``directory``."""
        ...


def corpus_fingerprint(passages: Sequence[Passage]) -> str:
    """SHA-256 of the passages' ids, titles and texts in order: detects an edited or swapped corpus."""
    digest = hashlib.sha256()
    for passage in passages:
        digest.update(json.dumps([passage.id, passage.title, passage.text], ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _check_target(target: Path) -> None:
    """Refuse to replace anything that is not an index folder (or an empty folder): saving replaces
    the target as a whole, and a user's unrelated folder must not be deleted by a typo."""
    if target.exists() and not target.is_dir():
        raise QAInputError("exists and is not a folder; expected an index folder to write", target)
    if target.is_dir() and not (target / SETTINGS_FILE).is_file() and any(target.iterdir()):
        raise QAInputError(
            f"folder is not empty and holds no {SETTINGS_FILE}; refusing to replace it with an index", target
        )


def save_index(retriever: IndexFiles, directory: str | Path) -> None:
    """Write ``retriever`` as an index folder at ``directory`` (parents created), crash-safely.

    An existing index folder (one with retriever.json) or empty folder there is replaced only once the
    new index is complete; any other existing path raises QAInputError.
    """
    target = Path(os.path.abspath(directory))
    _check_target(target)
    with atomic_folder(target) as folder:
        if isinstance(retriever.passages, ArrowPassages):
            shutil.copyfile(retriever.passages.path, folder / PASSAGES_FILE)  # already in this format
        else:
            write_arrow_corpus(retriever.passages, folder / PASSAGES_FILE)
        retriever.write_index_files(folder)
        settings = {
            "format": FORMAT_VERSION,
            **retriever.index_settings(),
            "passages": len(retriever.passages),
            "corpus_sha256": corpus_fingerprint(retriever.passages),
        }
        # retriever.json last: a folder without it is never taken for an index.
        with atomic_outputs([folder / SETTINGS_FILE]) as (handle,):
            json.dump(settings, handle, indent=2, ensure_ascii=False)
            handle.write("\n")


def read_settings(directory: str | Path) -> dict[str, Any]:
    """The parsed retriever.json of an index folder (a JSON object with a string ``kind``)."""
    directory = Path(directory)
    if not directory.exists():
        raise QAInputError("index folder not found", directory)
    if not directory.is_dir():
        raise QAInputError("is not a folder; expected a saved retriever index folder", directory)
    path = directory / SETTINGS_FILE
    if not path.is_file():
        raise QAInputError(f"no {SETTINGS_FILE} in this folder; it is not a saved retriever index", path)
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise QAInputError(f"not valid JSON ({error}); the index is corrupt, rebuild it", path) from None
    if not isinstance(settings, dict) or not isinstance(settings.get("kind"), str):
        raise QAInputError('expected a JSON object with a string "kind"', path)
    if settings.get("format", 1) not in READABLE_FORMATS:
        raise QAInputError(
            f"index format {settings.get('format')!r} is not supported (this version reads "
            f"{', '.join(map(str, READABLE_FORMATS))})",
            path,
        )
    return settings


def read_index(directory: str | Path, kind: str) -> tuple[dict[str, Any], Sequence[Passage]]:
    """(settings, passages) of a saved index of ``kind``, after checking the corpus is the one the
    index was built from. Raises QAInputError for a missing, foreign, corrupt or mismatched folder."""
    directory = Path(directory)
    settings = read_settings(directory)
    if settings["kind"] != kind:
        raise QAInputError(
            f"holds a {settings['kind']!r} index, not {kind!r} (load_retriever reads any kind)",
            directory / SETTINGS_FILE,
        )
    if settings.get("format", 1) == 1:
        corpus_path = directory / OLD_PASSAGES_FILE
        passages: Sequence[Passage] = read_corpus(corpus_path)
    else:
        corpus_path = directory / PASSAGES_FILE
        passages = ArrowPassages(corpus_path)
    if len(passages) != settings.get("passages") or corpus_fingerprint(passages) != settings.get(
        "corpus_sha256"
    ):
        raise QAInputError(
            f"does not match the index ({len(passages)} passages, the index was built on "
            f"{settings.get('passages')}, or their text differs); was the file edited? Rebuild the index",
            corpus_path,
        )
    return settings, passages
