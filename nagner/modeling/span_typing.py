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
    """Type logits over NONE ∪ types of spans, from [first word; last word; mean of the words],
    and with ``gaps`` also [word before the gap; word after it; mean of the skipped words] (zeros
    for a contiguous span), so "pain in ... shoulder" and "pain in knee and shoulder" differ by
    more than their mean."""

    def __init__(self, hidden_size: int, num_types: int, dropout: float, gaps: bool = False, inner_size: int = 192):
        """hidden_size: the word states' width; num_types: classes including NONE."""
        super().__init__()
        self.gaps = gaps
        parts = 6 if gaps else 3
        self.mlp = nn.Sequential(
            nn.Linear(parts * hidden_size, inner_size), nn.GELU(), nn.Dropout(dropout), nn.Linear(inner_size, num_types)
        )

    def forward(self, words: torch.Tensor, sentence: torch.Tensor, span_mask: torch.Tensor) -> torch.Tensor:
        """words: (B, n, d); sentence: (S,); span_mask: (S, n) True on each span's words (at least
        one) → (S, num_types)."""
        n = words.shape[1]
        span_mask = span_mask[:, :n]
        position = torch.arange(n, device=words.device)
        first = torch.where(span_mask, position, n).amin(-1).clamp(max=n - 1)  # (S,)
        last = torch.where(span_mask, position, -1).amax(-1).clamp(min=0)  # (S,)
        parts = [words[sentence, first], words[sentence, last], _masked_mean(words, sentence, span_mask)]
        if self.gaps:  # skipped words: inside [first, last], not in the span
            gap = (position >= first[:, None]) & (position <= last[:, None]) & ~span_mask  # (S, n)
            has_gap = gap.any(-1, keepdim=True).to(words.dtype)  # (S, 1)
            before = (torch.where(gap, position, n).amin(-1) - 1).clamp(0, n - 1)  # last word before the first gap
            after = (torch.where(gap, position, -1).amax(-1) + 1).clamp(0, n - 1)  # first word after the last gap
            parts += [has_gap * words[sentence, before], has_gap * words[sentence, after], _masked_mean(words, sentence, gap)]
        return self.mlp(torch.cat(parts, dim=-1))


def _masked_mean(words: torch.Tensor, sentence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """words: (B, n, d); sentence: (S,); mask: (S, n) → (S, d) the mean of each row's masked words
    of its sentence (zeros where none), without an (S, n, d) gather."""
    row, word = mask.nonzero(as_tuple=True)  # (P,): every (row, word) pair
    S, d = mask.shape[0], words.shape[-1]
    counts = torch.zeros(S, device=words.device, dtype=words.dtype).index_add_(0, row, torch.ones_like(row, dtype=words.dtype))
    summed = words.new_zeros(S, d).index_add_(0, row, words[sentence[row], word])
    return summed / counts.clamp(min=1).unsqueeze(-1)
