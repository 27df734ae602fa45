"""The entity-detecting part of the encoder: which words start / end an entity, and how many start there."""

from __future__ import annotations

import torch
from torch import nn


class MentionDetector(nn.Module):
    """Per-word heads on the pooled word states.

    start / end: one logit each (sigmoid, BCE): the word starts / ends some entity.
    count: K + 1 logits (CE): how many entities start at the word (0..K). At inference the
    words above the start threshold open as many decoder slots as the most likely
    count among 1..K (a detected start has at least one entity).
    """

    def __init__(self, hidden_size: int, max_entities_per_start: int, dropout: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.Dropout(dropout))
        self.boundary = nn.Linear(hidden_size, 2)
        self.count = nn.Linear(hidden_size, max_entities_per_start + 1)

    def forward(self, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """words: (B, n, d) → start logits (B, n), end logits (B, n), count logits (B, n, K + 1)."""
        hidden = self.mlp(words)
        boundary = self.boundary(hidden)  # (B, n, 2)
        return boundary[..., 0], boundary[..., 1], self.count(hidden)
