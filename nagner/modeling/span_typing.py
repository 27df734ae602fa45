"""A slot's type from its decoder type position and the words of its span.

The decoder's type position never sees which span the slot points at. Two span-side terms are
added to its logits over NONE ∪ types, both computed from the span the slot decodes (in training:
the gold span where the slot is matched, else its own guess, as at inference):

- ``span_typing``: for each type, the mean over the span's words of the detector's word-type
  logit (token classification's dense signal); NONE gets nothing extra.
- ``span_classifier``: a span classifier (SpanNER-style) on the encoder states of the span's first
  word, last word and mean, giving logits for NONE and every type: the span itself can say "not
  an entity" and which type it is, straight from the encoder, without a trip through the decoder.
"""

from __future__ import annotations

import torch
from torch import nn


def span_type_bias(word_type_logits: torch.Tensor, sentence: torch.Tensor, span_mask: torch.Tensor) -> torch.Tensor:
    """word_type_logits: (B, n, T); sentence: (S,) each span's sentence; span_mask: (S, n) its words
    → (S, T + 1): 0 for NONE, then the mean word-type logit of each type over the span's words."""
    n = word_type_logits.shape[1]
    mask = span_mask[:, :n].to(word_type_logits.dtype)  # (S, n)
    summed = torch.einsum("sn,snt->st", mask, word_type_logits[sentence])  # (S, T)
    mean = summed / mask.sum(-1, keepdim=True).clamp(min=1)
    return torch.cat([mean.new_zeros(mean.shape[0], 1), mean], dim=-1)


class SpanClassifier(nn.Module):
    """Type logits over NONE ∪ types of spans, from [first word; last word; mean of the words]."""

    def __init__(self, hidden_size: int, num_types: int, dropout: float, inner_size: int = 192):
        """hidden_size: the word states' width; num_types: classes including NONE."""
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(3 * hidden_size, inner_size), nn.GELU(), nn.Dropout(dropout), nn.Linear(inner_size, num_types)
        )

    def forward(self, words: torch.Tensor, sentence: torch.Tensor, span_mask: torch.Tensor) -> torch.Tensor:
        """words: (B, n, d); sentence: (S,); span_mask: (S, n) True on each span's words (at least
        one) → (S, num_types)."""
        n, d = words.shape[1], words.shape[2]
        span, word = span_mask[:, :n].nonzero(as_tuple=True)  # (P,): every (span, word) pair
        S = span_mask.shape[0]
        states = words[sentence[span], word]  # (P, d)
        first = torch.full((S,), n, device=word.device).scatter_reduce(0, span, word, "amin")  # (S,)
        last = torch.full((S,), -1, device=word.device).scatter_reduce(0, span, word, "amax")  # (S,)
        counts = torch.zeros(S, device=words.device, dtype=words.dtype).index_add_(0, span, torch.ones_like(span, dtype=words.dtype))
        mean = words.new_zeros(S, d).index_add_(0, span, states) / counts.clamp(min=1).unsqueeze(-1)  # (S, d)
        first_state = words[sentence, first.clamp(max=n - 1)]  # (S, d)
        last_state = words[sentence, last.clamp(min=0)]  # (S, d)
        return self.mlp(torch.cat([first_state, last_state, mean], dim=-1))
