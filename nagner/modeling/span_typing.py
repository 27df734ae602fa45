"""A slot's type from its decoder type position and the words of its span.

The decoder's type position never sees which span the slot points at; the detector's word-type
head sees every word with token classification's dense signal. With ``span_typing`` a slot's type
logits over NONE ∪ types are the decoder's plus, for each type, the mean word-type logit over the
entity's words (NONE gets nothing extra, so rejecting a false start stays the decoder's call).
"""

from __future__ import annotations

import torch


def span_type_bias(word_type_logits: torch.Tensor, sentence: torch.Tensor, span_mask: torch.Tensor) -> torch.Tensor:
    """word_type_logits: (B, n, T); sentence: (S,) each span's sentence; span_mask: (S, n) its words
    → (S, T + 1): 0 for NONE, then the mean word-type logit of each type over the span's words."""
    n = word_type_logits.shape[1]
    mask = span_mask[:, :n].to(word_type_logits.dtype)  # (S, n)
    summed = torch.einsum("sn,snt->st", mask, word_type_logits[sentence])  # (S, T)
    mean = summed / mask.sum(-1, keepdim=True).clamp(min=1)
    return torch.cat([mean.new_zeros(mean.shape[0], 1), mean], dim=-1)
