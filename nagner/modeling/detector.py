"""The entity-detecting part of the encoder: which words start / end an entity, how many start
there, and (optionally) which entity types each word is inside of."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Detection:
    """Per-word detector outputs: start / end logits (B, n), count logits (B, n, K + 1) and,
    with span typing, word-type logits (B, n, T) (else None)."""

    start_logits: torch.Tensor
    end_logits: torch.Tensor
    count_logits: torch.Tensor
    word_type_logits: torch.Tensor | None = None

    def select(self, rows: torch.Tensor, n: int) -> Detection:
        """The outputs of sentences ``rows`` (B',) over their first ``n`` words."""
        types = None if self.word_type_logits is None else self.word_type_logits[rows, :n]
        return Detection(self.start_logits[rows, :n], self.end_logits[rows, :n], self.count_logits[rows, :n], types)


class MentionDetector(nn.Module):
    """Per-word heads on the pooled word states.

    start / end: one logit each (sigmoid, BCE): the word starts / ends some entity.
    count: K + 1 logits (CE, trained at gold starts): how many entities start at the word; the
        slot rule (`nagner.modeling.slots`) opens a k-th slot where P(count >= k) is high enough.
    word types (``num_types`` > 0): one logit per entity type (sigmoid, BCE): the word lies inside
        an entity of that type — token classification's dense signal, used to type spans.
    """

    def __init__(self, hidden_size: int, max_entities_per_start: int, dropout: float, num_types: int = 0):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.Dropout(dropout))
        self.boundary = nn.Linear(hidden_size, 2)
        self.count = nn.Linear(hidden_size, max_entities_per_start + 1)
        self.word_types = nn.Linear(hidden_size, num_types) if num_types else None

    def reset_parameters(self, start_prior: float = 0.1, single_entity_prior: float = 0.9) -> None:
        """Prior initialisation of the output biases (RetinaNet's): a word starts / ends an entity
        with probability ``start_prior``, and a start holds one entity with ``single_entity_prior``
        (the rest spread over the other counts). An untrained detector then opens few slots —
        from zero bias every second word would open a slot and, by the count rule, six of them —
        so the first epoch is not spent decoding thousands of false slots."""
        with torch.no_grad():
            self.boundary.bias.fill_(math.log(start_prior / (1 - start_prior)))
            K = self.count.bias.shape[0] - 1
            prior = torch.full((K + 1,), (1 - single_entity_prior) / K)
            prior[1] = single_entity_prior
            self.count.bias.copy_(prior.log())

    def forward(self, words: torch.Tensor) -> Detection:
        """words: (B, n, d) → `Detection`."""
        hidden = self.mlp(words)
        boundary = self.boundary(hidden)  # (B, n, 2)
        word_types = self.word_types(hidden) if self.word_types is not None else None  # (B, n, T)
        return Detection(boundary[..., 0], boundary[..., 1], self.count(hidden), word_types)
