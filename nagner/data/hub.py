"""Token-classification datasets of the Hugging Face Hub (or local files via ``datasets``)."""

from __future__ import annotations

from typing import Any

from nagner.data.example import Entity, Sentence
from nagner.data.tags import tags_to_spans
from nagner.errors import NagNerInputError


def _tag_names(dataset: Any, tags_column: str) -> list[str] | None:
    """Names of a ``Sequence(ClassLabel)`` tag column, or None when the tags are strings."""
    feature = getattr(dataset, "features", {}).get(tags_column)
    inner = getattr(feature, "feature", None)  # Sequence / List of ClassLabel
    names = getattr(inner, "names", None)
    return list(names) if names else None


def sentences_from_hf_dataset(
    dataset: Any, tokens_column: str = "tokens", tags_column: str = "ner_tags", scheme: str = "auto",
    source: str | None = None,
) -> list[Sentence]:
    """Sentences of a ``datasets.Dataset`` with a word-list column and a tag-list column.

    Integer tags are mapped to names through the column's ClassLabel feature; string tags are
    used as they are. ``Sentence.source`` is ``source`` and ``Sentence.line`` the 1-based row.
    Raises NagNerInputError for a missing column, a row whose lengths differ, or an unknown tag.
    """
    source = source or "dataset"
    columns = list(getattr(dataset, "column_names", []))
    for column in (tokens_column, tags_column):
        if column not in columns:
            raise NagNerInputError(f"no column {column!r}; the dataset has {columns}", source)
    names = _tag_names(dataset, tags_column)
    sentences = []
    for row, (words, raw_tags) in enumerate(zip(dataset[tokens_column], dataset[tags_column], strict=True), 1):
        if len(words) != len(raw_tags):
            raise NagNerInputError(f"{len(words)} tokens but {len(raw_tags)} tags", source, row)
        if names is not None and any(not 0 <= t < len(names) for t in raw_tags if not isinstance(t, str)):
            raise NagNerInputError(f"tag ids {list(raw_tags)} outside the {len(names)} labels {names}", source, row)
        tags = [names[t] if names is not None and not isinstance(t, str) else str(t) for t in raw_tags]
        try:
            spans = tags_to_spans(tags, scheme)
        except ValueError as error:
            raise NagNerInputError(str(error), source, row) from None
        entities = [Entity.from_span(type_, start, end) for type_, start, end in spans]
        sentences.append(Sentence(words=list(words), entities=entities, source=source, line=row))
    return sentences


def load_hub_dataset(
    name: str,
    split: str,
    config_name: str | None = None,
    tokens_column: str = "tokens",
    tags_column: str = "ner_tags",
    **load_kwargs: Any,
) -> list[Sentence]:
    """Load ``split`` of a dataset with ``datasets.load_dataset(name, config_name, ...)`` and chunk
    its tags into Sentences (see :func:`sentences_from_hf_dataset`).

    ``load_kwargs`` go to ``load_dataset`` (e.g. ``data_files=`` for ``name="json"``).
    """
    import datasets  # heavy; only needed here

    dataset = datasets.load_dataset(name, config_name, split=split, **load_kwargs)
    label = f"{name}{'/' + config_name if config_name else ''}:{split}"
    return sentences_from_hf_dataset(dataset, tokens_column, tags_column, source=label)
