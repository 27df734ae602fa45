"""Test helper: greedy grammar-constrained decoding of a whole pass of pointer logits at once (the
model decodes slot by slot inside its decoder loop; tests compare against this)."""

from __future__ import annotations

import torch

from nagner.modeling.targets import PointerGrammar


def constrained_pointer_decode(
    logits: torch.Tensor, starts: torch.Tensor, n_words: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a whole pass of pointer logits (S, L, n + 1) → classes (S, L), log-probability (S,)."""
    grammar = PointerGrammar(starts, n_words, logits.shape[1])
    for t in range(logits.shape[1]):
        grammar.step(logits[:, t])
    return grammar.classes, grammar.log_prob
