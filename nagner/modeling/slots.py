"""Which decoder slots a batch opens: one rule for training and inference.

A word opens slots when the detector's start probability exceeds ``start_threshold``; it opens

    slots_per_start = clamp(1 + #{k >= 2 : P(count >= k) > count_threshold}, min_slots_per_start, K)

slots (P from the count head's softmax). Training opens exactly the same slots and, on top:
gold start words the detector missed (with at least their gold count), extra slots where a gold
start has more entities than the rule opened, and one slot on each of some random negative words
(``negative_start_ratio`` of the words left; one slot is enough to learn NONE there, and it keeps
the decoder's training cost down). Every slot without a gold entity learns NONE, so at inference a surplus or
false slot says NONE instead of producing an entity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # the config class stands on transformers; prediction from a runtime needs only its values
    from nagner.modeling.configuration import NagNerConfig



@dataclass
class Slots:
    """Decoder slots of a batch: sentence, start word and rank of each, all (S,)."""

    batch: torch.Tensor
    word: torch.Tensor
    rank: torch.Tensor

    @classmethod
    def from_counts(cls, counts: torch.Tensor) -> Slots:
        """counts: (B, n) slots per word → one slot per (b, i, k < counts[b, i])."""
        B, n = counts.shape
        flat = counts.reshape(-1)
        cell = torch.repeat_interleave(torch.arange(B * n, device=counts.device), flat)  # (S,)
        first = torch.cumsum(flat, 0) - flat  # (B*n,) index of each cell's first slot
        rank = torch.arange(cell.shape[0], device=counts.device) - first[cell]
        return cls(cell // n, cell % n, rank)

    def __len__(self) -> int:
        return self.batch.shape[0]

    def groups(self) -> list[tuple[int, int]]:
        """(sentence, start word) of every slot."""
        return list(zip(self.batch.tolist(), self.word.tolist()))


def slots_per_start(count_logits: torch.Tensor, config: NagNerConfig) -> torch.Tensor:
    """count_logits: (B, n, K + 1) → (B, n) slots a start word opens (the rule in the module docstring)."""
    probs = count_logits.float().softmax(-1)  # (B, n, K + 1)
    at_least = probs.flip(-1).cumsum(-1).flip(-1)  # (B, n, K + 1): P(count >= k)
    extra = (at_least[..., 2:] > config.count_threshold).sum(-1)  # (B, n)
    return (1 + extra).clamp(min=config.min_slots_per_start, max=config.max_entities_per_start)


@torch.no_grad()
def inference_slot_counts(
    start_logits: torch.Tensor, count_logits: torch.Tensor, word_mask: torch.Tensor, config: NagNerConfig
) -> torch.Tensor:
    """(B, n) slots each word opens at inference."""
    opened = (start_logits.sigmoid() > config.start_threshold) & word_mask
    return torch.where(opened, slots_per_start(count_logits, config), 0)


@torch.no_grad()
def training_slot_counts(
    start_logits: torch.Tensor,
    count_logits: torch.Tensor,
    gold_counts: torch.Tensor,
    word_mask: torch.Tensor,
    config: NagNerConfig,
    negatives: bool = True,
) -> torch.Tensor:
    """(B, n) slots each word opens in training: the inference rule's slots, gold starts with at
    least their gold count, and with ``negatives`` random negative words (module docstring; like
    dropout, the model draws them only in training mode, so an eval-mode loss is deterministic).
    gold_counts: (B, n)."""
    counts = inference_slot_counts(start_logits, count_logits, word_mask, config)
    gold = gold_counts.clamp(min=0) * word_mask
    rule = slots_per_start(count_logits, config)
    counts = torch.where(gold > 0, torch.maximum(gold, rule), counts)
    if negatives and config.negative_start_ratio > 0:
        free = word_mask & (counts == 0)
        negative = free & (torch.rand(free.shape, device=free.device) < config.negative_start_ratio)
        counts = torch.where(negative, torch.ones_like(counts), counts)
    counts = counts.clamp(max=config.max_entities_per_start)
    if counts.sum() == 0:  # keep the decoder in the graph: one NONE slot on the first word
        counts[0, 0] = 1
    return counts
