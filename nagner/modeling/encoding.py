"""Sentences → encoder windows with word positions and slot targets, and the batch collator."""

from __future__ import annotations

import logging
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from nagner.data.example import Entity, Sentence
from nagner.modeling.targets import IGNORE, entity_to_pointers, pointers_needed
from nagner.modeling.windows import inside_window, plan_windows

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # the config class stands on transformers; prediction from a runtime needs only its values
    from nagner.modeling.configuration import NagNerConfig


def word_subwords(tokenizer: Any, words: list[str], max_subwords_per_word: int) -> list[list[int]]:
    """Sub-token ids of every word (a word the tokenizer drops becomes the unknown token)."""
    return sentence_subwords(tokenizer, [words], max_subwords_per_word)[0]


def sentence_subwords(tokenizer: Any, sentences: list[list[str]], max_subwords_per_word: int) -> list[list[list[int]]]:
    """`word_subwords` of many sentences at once: each distinct word is encoded once (a word is
    encoded alone, so its pieces do not depend on the sentence)."""
    distinct = list(dict.fromkeys(word for words in sentences for word in words))
    if not distinct:
        return [[] for _ in sentences]
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
    pieces = {
        word: (ids or [unk])[:max_subwords_per_word] for word, ids in zip(distinct, _encode_words(tokenizer, distinct))
    }
    return [[pieces[word] for word in words] for words in sentences]


_BARE_BACKENDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _encode_words(tokenizer: Any, words: list[str]) -> list[list[int]]:
    """Sub-token ids of each word, without special tokens. A transformers fast tokenizer is called
    through a copy of its `tokenizers` backend with padding and truncation off (what transformers
    sets on every call, and what a saved tokenizer.json may have on: all-MiniLM-L6-v2's pads to
    128), which skips transformers' per-call settings and conversions; any other tokenizer is
    called as is."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode"):
        return tokenizer(words, add_special_tokens=False)["input_ids"]
    try:
        bare = _BARE_BACKENDS[tokenizer]
    except (KeyError, TypeError):
        bare = type(backend).from_str(backend.to_str())
        bare.no_padding()
        bare.no_truncation()
        try:
            _BARE_BACKENDS[tokenizer] = bare
        except TypeError:  # not weak-referenceable: a copy per call
            pass
    # one word at a time: `encode_batch` hands the words to a thread pool that competes with torch's
    # threads (measured on this 2-core machine: about 6 µs a word one by one, 5–20 µs a word in
    # batches, worst for small batches and while other work runs)
    return [bare.encode(word, add_special_tokens=False).ids for word in words]


@dataclass
class EncodingReport:
    """What `encode_sentences` could not turn into training targets (reported, never silent)."""

    entities: int = 0
    too_many_fragments: int = 0
    too_many_per_start: int = 0
    outside_windows: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def unfit(self) -> int:
        return self.too_many_fragments + self.too_many_per_start + self.outside_windows

    def note(self, reason: str, sentence: Sentence, entity: Entity) -> None:
        setattr(self, reason, getattr(self, reason) + 1)
        if len(self.examples) < 5:
            where = f"{sentence.source}:{sentence.line}" if sentence.source else "sentence"
            self.examples.append(f"{where}: {entity.type} {list(entity.indices)} ({reason.replace('_', ' ')})")

    def log(self) -> None:
        if self.unfit:
            logger.warning(
                "%d of %d entities cannot be training targets (too many fragments for max_pointers: %d, "
                "more entities at one start word than max_entities_per_start: %d, longer than half a window: %d); "
                "they stay in evaluation. Examples: %s",
                self.unfit, self.entities, self.too_many_fragments, self.too_many_per_start,
                self.outside_windows, "; ".join(self.examples),
            )


def encode_sentence(
    sentence: Sentence,
    tokenizer: Any,
    config: NagNerConfig,
    with_targets: bool = False,
    report: EncodingReport | None = None,
    sentence_index: int = 0,
    subwords: list[list[int]] | None = None,
) -> list[dict[str, Any]]:
    """One feature dict per encoder window of ``sentence``.

    Each holds ``input_ids``, the first/last subword position of every word (``word_first``,
    ``word_last``), where the window sits (``sentence_index``, ``word_offset``, ``n_words``) and,
    with ``with_targets``, the entities that lie inside the window as slot targets. ``subwords``:
    the words' sub-token ids where already known (`sentence_subwords`), else computed here.
    """
    if subwords is None:
        subwords = word_subwords(tokenizer, sentence.words, config.max_subwords_per_word)
    windows = plan_windows([len(s) for s in subwords], config.max_subwords - 2)
    targets = trainable_entities(sentence, windows, config, report) if with_targets else []
    features = []
    for begin, end in windows:
        input_ids = [tokenizer.cls_token_id]
        word_first, word_last = [], []
        for ids in subwords[begin:end]:
            word_first.append(len(input_ids))
            input_ids.extend(ids)
            word_last.append(len(input_ids) - 1)
        input_ids.append(tokenizer.sep_token_id)
        feature: dict[str, Any] = {
            "input_ids": input_ids,
            "word_first": word_first,
            "word_last": word_last,
            "sentence_index": sentence_index,
            "word_offset": begin,
            "n_words": len(sentence.words),
        }
        if with_targets:
            feature.update(_window_targets(targets, (begin, end), config))
        features.append(feature)
    return features


def trainable_entities(
    sentence: Sentence, windows: list[tuple[int, int]], config: NagNerConfig, report: EncodingReport | None
) -> list[Entity]:
    """The sentence's entities that can be slot targets, decided once per sentence (not per window).

    Left out, and counted in ``report``: entities needing more than ``max_pointers`` pointers, those
    beyond ``max_entities_per_start`` at one start word, and those no window can output (they would
    touch a window's cut edge everywhere: longer than about half a window).
    """
    type_ids = set(config.entity_types)
    per_start: Counter[int] = Counter()
    kept = []
    entities = sorted(set(sentence.entities))
    if report is not None:
        report.entities += len(entities)
    for entity in entities:
        if entity.type not in type_ids:
            raise ValueError(f"entity type {entity.type!r} is not in the model's label set {config.entity_types}")
        reason = None
        if pointers_needed(entity) > config.max_pointers:
            reason = "too_many_fragments"
        elif per_start[entity.start] >= config.max_entities_per_start:
            reason = "too_many_per_start"
        elif not any(inside_window(entity.indices, w, len(sentence.words)) for w in windows):
            reason = "outside_windows"
        if reason:
            if report is not None:
                report.note(reason, sentence, entity)
            continue
        per_start[entity.start] += 1
        kept.append(entity)
    return kept


def _window_targets(entities: list[Entity], window: tuple[int, int], config: NagNerConfig) -> dict[str, list]:
    """Slot targets and detector labels of the ``entities`` that lie in ``window`` (window coordinates)."""
    begin, end = window
    type_ids = {t: i + 1 for i, t in enumerate(config.entity_types)}
    n = end - begin
    start_labels, end_labels, count_labels = [0.0] * n, [0.0] * n, [0] * n
    starts, pointers, types = [], [], []
    for entity in entities:
        if entity.start < begin or entity.indices[-1] >= end:
            continue
        local = Entity(entity.type, tuple(i - begin for i in entity.indices))
        starts.append(local.start)
        pointers.append(entity_to_pointers(local, config.max_pointers))
        types.append(type_ids[entity.type])
        start_labels[local.start] = 1.0
        end_labels[local.indices[-1]] = 1.0
        count_labels[local.start] += 1
    return {
        "start_labels": start_labels,
        "end_labels": end_labels,
        "count_labels": count_labels,
        "entity_starts": starts,
        "entity_pointers": pointers,
        "entity_types": types,
    }


def encode_sentences(
    sentences: list[Sentence], tokenizer: Any, config: NagNerConfig, with_targets: bool = False
) -> tuple[list[dict[str, Any]], EncodingReport]:
    """Encode many sentences; the report counts entities that cannot be targets (and logs them)."""
    report = EncodingReport()
    features: list[dict[str, Any]] = []
    subwords = sentence_subwords(tokenizer, [sentence.words for sentence in sentences], config.max_subwords_per_word)
    for k, sentence in enumerate(sentences):
        features.extend(encode_sentence(sentence, tokenizer, config, with_targets, report, k, subwords[k]))
    if with_targets:
        report.log()
    return features, report


class NagNerCollator:
    """Pads feature dicts from `encode_sentence` into the tensors `NagNerModel.forward` takes."""

    def __init__(self, pad_token_id: int, max_pointers: int):
        self.pad_token_id = pad_token_id
        self.max_pointers = max_pointers

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        B = len(features)
        T = max(len(f["input_ids"]) for f in features)
        n = max(1, max(len(f["word_first"]) for f in features))
        input_ids = torch.full((B, T), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(B, T, dtype=torch.long)
        word_first = torch.zeros(B, n, dtype=torch.long)
        word_last = torch.zeros(B, n, dtype=torch.long)
        word_mask = torch.zeros(B, n, dtype=torch.bool)
        for b, f in enumerate(features):
            ids, m = f["input_ids"], len(f["word_first"])
            input_ids[b, : len(ids)] = torch.tensor(ids)
            attention_mask[b, : len(ids)] = 1
            word_first[b, :m] = torch.tensor(f["word_first"], dtype=torch.long)
            word_last[b, :m] = torch.tensor(f["word_last"], dtype=torch.long)
            word_mask[b, :m] = True
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "word_first": word_first,
            "word_last": word_last,
            "word_mask": word_mask,
        }
        if "entity_starts" in features[0]:
            batch.update(self._targets(features, n))
        return batch

    def _targets(self, features: list[dict[str, Any]], n: int) -> dict[str, torch.Tensor]:
        B, L = len(features), self.max_pointers
        E = max(1, max(len(f["entity_starts"]) for f in features))
        start_labels = torch.zeros(B, n)
        end_labels = torch.zeros(B, n)
        count_labels = torch.full((B, n), IGNORE, dtype=torch.long)
        entity_starts = torch.full((B, E), -1, dtype=torch.long)
        entity_pointers = torch.full((B, E, L), IGNORE, dtype=torch.long)
        entity_types = torch.full((B, E), IGNORE, dtype=torch.long)
        for b, f in enumerate(features):
            m, e = len(f["start_labels"]), len(f["entity_starts"])
            start_labels[b, :m] = torch.tensor(f["start_labels"])
            end_labels[b, :m] = torch.tensor(f["end_labels"])
            count_labels[b, :m] = torch.tensor(f["count_labels"], dtype=torch.long)
            if e:
                entity_starts[b, :e] = torch.tensor(f["entity_starts"], dtype=torch.long)
                entity_pointers[b, :e] = torch.tensor(f["entity_pointers"], dtype=torch.long)
                entity_types[b, :e] = torch.tensor(f["entity_types"], dtype=torch.long)
        return {
            "start_labels": start_labels,
            "end_labels": end_labels,
            "count_labels": count_labels,
            "entity_starts": entity_starts,
            "entity_pointers": entity_pointers,
            "entity_types": entity_types,
        }
