"""Prediction with a `NagNerModel`: sentences → encoder windows → batches → entities, and raw
text → JSON-ready records with character offsets.

Long sentences are split into overlapping windows; an entity is taken only from windows where it
does not touch a cut edge, and duplicates from overlapping windows are merged (best score kept).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from nagner.common.modes import evaluating
from nagner.data.example import Entity, Sentence
from nagner.data.jsonl import sentence_record
from nagner.data.text import DEFAULT_LANGUAGE, join_sentences, text_sentences, with_offsets
from nagner.modeling.decoding import Found
from nagner.modeling.detector import Detection
from nagner.modeling.encoding import NagNerCollator, encode_sentences
from nagner.modeling.windows import inside_window


@dataclass
class EncodedBatch:
    """One batch of encoder windows with the encoder-side outputs (what decoding starts from)."""

    features: list[dict[str, Any]]
    words: torch.Tensor  # (B, n, d)
    word_mask: torch.Tensor  # (B, n)
    detection: Detection


@torch.no_grad()
def encoded_batches(model: Any, sentences: list[Sentence], batch_size: int = 32) -> Iterator[EncodedBatch]:
    """Encode ``sentences`` window by window (similar lengths batched together) in eval mode."""
    if model.tokenizer is None:
        raise ValueError("this model has no tokenizer; load it with from_pretrained or from_encoder")
    features, _ = encode_sentences(sentences, model.tokenizer, model.config)
    features.sort(key=lambda f: len(f["input_ids"]))  # similar lengths share a batch: less padding
    collate = NagNerCollator(model.tokenizer.pad_token_id or 0, model.config.max_pointers)
    device = model.device
    for begin in range(0, len(features), batch_size):
        chunk = [f for f in features[begin : begin + batch_size] if f["word_first"]]
        if not chunk:
            continue
        batch = {k: v.to(device) for k, v in collate(chunk).items()}
        words = model.encode_words(batch["input_ids"], batch["attention_mask"], batch["word_first"], batch["word_last"])
        yield EncodedBatch(chunk, words, batch["word_mask"], model.detector(words))


def merge_windows(
    sentences: list[Sentence], batches: list[tuple[list[dict[str, Any]], list[list[Found]]]], entity_types: list[str]
) -> list[list[Entity]]:
    """Per-window decoded entities → per-sentence entities (sentence word indices, best score kept)."""
    best: list[dict[tuple[str, tuple[int, ...]], float]] = [{} for _ in sentences]
    for features, decoded in batches:
        for feature, entities in zip(features, decoded):
            offset, n_words = feature["word_offset"], feature["n_words"]
            window = (offset, offset + len(feature["word_first"]))
            found = best[feature["sentence_index"]]
            for type_id, indices, score in entities:
                indices = tuple(i + offset for i in indices)
                if window != (0, n_words) and not inside_window(indices, window, n_words):
                    continue
                key = (entity_types[type_id - 1], indices)
                found[key] = max(score, found.get(key, 0.0))
    return [
        sorted((Entity(t, idx, s) for (t, idx), s in found.items()), key=lambda e: (e.start, e.indices, e.type))
        for found in best
    ]


@torch.no_grad()
def predict_sentences(
    model: Any, sentences: list[Sentence], batch_size: int = 32, threshold: float | None = None, **decoding: Any
) -> list[list[Entity]]:
    """Entities (with scores) of each sentence, word indices into ``sentence.words``.

    ``threshold`` (default: the config's ``score_threshold``) and ``decoding`` (``beam_size``,
    ``end_bias``) go to `NagNerModel.decode`. The model's training mode is restored afterwards.
    """
    with evaluating(model):
        decoded = [
            (batch.features, model.decode(batch.words, batch.word_mask, batch.detection, threshold, **decoding))
            for batch in encoded_batches(model, sentences, batch_size)
        ]
    return merge_windows(sentences, decoded, model.config.entity_types)


def predict_texts(
    model: Any,
    texts: str | list[str] | list[list[str]],
    batch_size: int = 32,
    threshold: float | None = None,
    is_split_into_words: bool = False,
) -> list[dict[str, Any]]:
    """Entities in raw texts (or pre-tokenized word lists) as JSON-ready records.

    A text is split into sentences and words by the model's tokenizer rules
    (``config.text_language``, see :mod:`nagner.data.text`); each sentence is predicted on its
    own. Each record: ``{"text": ..., "entities": [{"type", "text", "spans": [[start, end), ...],
    "score"}], "sentences": [[start, end), ...]}`` with character offsets into ``text``; a
    discontinuous entity has several spans and its ``text`` joins the fragments with " … ".
    A word list is one sentence, its words joined by spaces.
    """
    if isinstance(texts, str) or (is_split_into_words and texts and isinstance(texts[0], str)):
        texts = [texts]  # type: ignore[list-item]
    if is_split_into_words:
        parts = [[with_offsets(Sentence(list(words)))] for words in texts]
        texts = [part[0].text for part in parts]
    else:
        language = getattr(model.config, "text_language", DEFAULT_LANGUAGE)
        parts = [text_sentences(text, language) for text in texts]
    sentences = [sentence for part in parts for sentence in part]
    found = predict_sentences(model, sentences, batch_size=batch_size, threshold=threshold)
    for sentence, entities in zip(sentences, found, strict=True):
        sentence.entities = entities
    return [sentence_record(join_sentences(text, part)) for text, part in zip(texts, parts, strict=True)]
