"""The training loss of NAG-NER (the set criterion, beside `matcher.py` as in DETR).

    loss = pointer CE + type CE                      (slots matched to gold entities; the rest learn NONE)
         + span-term CE                               (span terms alone: gold spans' types, NONE for a
                                                        matched slot's wrong beam sequences)
         + detect_weight · (start BCE + end BCE)     (every word)
         + count_weight  · count CE                  (gold start words only, larger counts weighted up)
         + typing_weight · word-type BCE             (every word × type, with span typing)

The count head is trained only where it is used: at start words, to tell how many entities start
there (class 0 never occurs at a gold start). Counts of 2, 3, 4, … are rarer and weigh 1.5, 2,
2.5, … (SetGNER's class weights), so the rule "open a k-th slot where P(count >= k) is high
enough" does open it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nagner.modeling.configuration import NagNerConfig
from nagner.modeling.detector import Detection
from nagner.modeling.slots import Slots
from nagner.modeling.targets import IGNORE


def _mean(values: torch.Tensor, sentence: torch.Tensor, batch_size: int, per_sentence: bool) -> torch.Tensor:
    """values (N,) of the sentences ``sentence`` (N,) → their mean, or per sentence (B,) (0 where none)."""
    if not per_sentence:
        return values.mean() if values.numel() else values.sum()
    sums = values.new_zeros(batch_size).index_add(0, sentence, values)
    counts = values.new_zeros(batch_size).index_add(0, sentence, torch.ones_like(values))
    return sums / counts.clamp(min=1)


def count_class_weights(max_entities_per_start: int, device: torch.device) -> torch.Tensor:
    """(K + 1,) weight of each count class: 1 for 0 and 1, then 0.5 · (k + 1)."""
    k = torch.arange(max_entities_per_start + 1, device=device, dtype=torch.float)
    return torch.clamp(0.5 * (k + 1), min=1.0)


class SetCriterion:
    """The loss terms, each a scalar (or (B,) with ``per_sentence``: each sentence's own mean)."""

    def __init__(self, config: NagNerConfig):
        self.config = config

    def detection(
        self,
        detection: Detection,
        word_mask: torch.Tensor,
        start_labels: torch.Tensor,
        end_labels: torch.Tensor,
        count_labels: torch.Tensor,
        word_type_labels: torch.Tensor | None,
        per_sentence: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(detect, count, typing) losses. Labels: start/end (B, n) 0/1; count (B, n) (−100 pad);
        word types (B, n, T) 0/1 or None."""
        B = word_mask.shape[0]
        word_batch = word_mask.nonzero()[:, 0]  # sentence of each real word
        bce = F.binary_cross_entropy_with_logits
        detect = _mean(bce(detection.start_logits[word_mask], start_labels[word_mask], reduction="none"), word_batch, B, per_sentence)
        detect = detect + _mean(
            bce(detection.end_logits[word_mask], end_labels[word_mask], reduction="none"), word_batch, B, per_sentence
        )
        at_start = (count_labels != IGNORE) & (count_labels > 0)  # (B, n)
        labels = count_labels[at_start]
        weights = count_class_weights(self.config.max_entities_per_start, labels.device)[labels]
        count = _mean(
            weights * F.cross_entropy(detection.count_logits[at_start], labels, reduction="none"),
            at_start.nonzero()[:, 0], B, per_sentence,
        )
        if detection.word_type_logits is None or word_type_labels is None:
            typing = detect.new_zeros(detect.shape)
        else:
            typing = _mean(
                bce(detection.word_type_logits[word_mask], word_type_labels[word_mask], reduction="none").mean(-1),
                word_batch, B, per_sentence,
            )
        return detect, count, typing

    def generation(
        self,
        pointer_logits: torch.Tensor,
        type_logits: torch.Tensor,
        slots: Slots,
        pointer_targets: torch.Tensor,
        type_targets: torch.Tensor,
        batch_size: int,
        per_sentence: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(pointer, type) losses. pointer_logits: (S, L, n + 1); type_logits: (S, T + 1);
        pointer_targets: (S, L) (IGNORE where untargeted); type_targets: (S,) (0 NONE)."""
        targeted = pointer_targets != IGNORE  # (S, L)
        if targeted.any():
            pointer = _mean(
                F.cross_entropy(pointer_logits[targeted], pointer_targets[targeted], reduction="none"),
                slots.batch.unsqueeze(1).expand_as(targeted)[targeted], batch_size, per_sentence,
            )
        else:
            pointer = pointer_logits[..., 0].sum() * 0.0  # keep the graph for DDP
            pointer = pointer.expand(batch_size) if per_sentence else pointer
        typed = _mean(F.cross_entropy(type_logits, type_targets, reduction="none"), slots.batch, batch_size, per_sentence)
        return pointer, typed

    def span_terms(
        self, logits: torch.Tensor, targets: torch.Tensor, sentence: torch.Tensor, batch_size: int, per_sentence: bool = False
    ) -> torch.Tensor:
        """CE of the span terms alone: gold spans towards their type, spans that are no entity
        towards NONE. logits: (N, T + 1); targets: (N,) type ids (0 NONE); sentence: (N,). 0 (in
        the graph) when there are none."""
        if not len(logits):
            zero = logits.sum() * 0.0
            return zero.expand(batch_size) if per_sentence else zero
        return _mean(F.cross_entropy(logits, targets, reduction="none"), sentence, batch_size, per_sentence)
