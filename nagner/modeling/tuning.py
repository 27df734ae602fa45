"""Decoding settings chosen on dev data: start threshold, NONE bias, beam width, END bias and score threshold.

The encoder runs once over the dev sentences; each setting re-runs only the slot decoder. The
search is coordinate-wise: first every start threshold × NONE bias at beam 1 and END bias 0, then
every beam width (where entities can have a second fragment, or a span classifier can pick among a
beam's sequences) × END bias (where a second fragment can start) at the best of those. For
each decoded setting the score threshold is chosen over the decoded entities' scores (dropping
entities below a threshold after decoding gives the same set as before, since the flat mode's
greedy selection only lets better-scoring entities block worse ones). The best micro F1 wins; ties
go to the earlier (simpler) setting.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

from nagner.common.modes import evaluating
from nagner.data.example import Entity, Sentence
from nagner.evaluation import evaluate_entities
from nagner.modeling.inference import encoded_batches, merge_windows

logger = logging.getLogger(__name__)

START_THRESHOLDS = (0.5, 0.4, 0.3, 0.2)
NONE_BIASES = (0.0, 0.5, 1.0, 2.0)
BEAM_SIZES = (1, 4)
END_BIASES = (0.0, -1.0, 1.0)
SCORE_THRESHOLDS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


@dataclass
class DecodingChoice:
    """One setting and its dev scores."""

    start_threshold: float
    none_bias: float
    beam_size: int
    end_bias: float
    score_threshold: float
    f1: float
    precision: float
    recall: float

    def settings(self) -> dict[str, Any]:
        return {
            "start_threshold": self.start_threshold, "none_bias": self.none_bias, "beam_size": self.beam_size,
            "end_bias": self.end_bias, "score_threshold": self.score_threshold,
        }


def _above(found: list[list[Entity]], threshold: float) -> list[list[Entity]]:
    return [[e for e in entities if (e.score or 0.0) >= threshold] for entities in found]


def tune_decoding(
    model: Any, dev_sentences: list[Sentence], batch_size: int = 64, apply: bool = True
) -> tuple[DecodingChoice, list[DecodingChoice]]:
    """The best decoding setting on ``dev_sentences`` (and every one tried); with ``apply`` the
    model's config takes it, so it is saved with the model."""
    config = model.config
    gold = [s.entities for s in dev_sentences]
    with evaluating(model):
        batches = list(encoded_batches(model, dev_sentences, batch_size))
        keys = ("start_threshold", "none_bias", "beam_size", "end_bias", "score_threshold")
        original = {k: getattr(config, k) for k in keys}
        tried: list[DecodingChoice] = []

        def score(start: float, none: float, beam: int, end: float) -> None:
            config.start_threshold = start
            decoded = [
                (b.features, model.decode(b.words, b.word_mask, b.detection, 0.0, beam, end, none)) for b in batches
            ]
            found = merge_windows(dev_sentences, decoded, config.entity_types)
            for threshold in SCORE_THRESHOLDS:
                metrics = evaluate_entities(gold, _above(found, threshold))
                tried.append(DecodingChoice(start, none, beam, end, threshold, metrics.f1, metrics.precision, metrics.recall))

        try:
            for start, none in itertools.product(START_THRESHOLDS, NONE_BIASES):
                score(start, none, 1, 0.0)
            fragments = config.max_pointers > 2  # END biases matter only where a second fragment can start
            if config.decode_mode == "nag" and (fragments or model.span_classifier is not None):
                first = max(tried, key=lambda c: c.f1)
                for beam, end in itertools.product(BEAM_SIZES, END_BIASES if fragments else (0.0,)):
                    if (beam, end) != (1, 0.0):
                        score(first.start_threshold, first.none_bias, beam, end)
        finally:
            for key, value in original.items():
                setattr(config, key, value)
    best = max(tried, key=lambda c: c.f1)  # max keeps the first of equals
    if apply:
        for key, value in best.settings().items():
            setattr(config, key, value)
    logger.info("decoding tuned on %d dev sentences: %s (F1 %.4f)", len(dev_sentences), best.settings(), best.f1)
    return best, tried
