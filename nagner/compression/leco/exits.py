"""LECO's exit search space: small heads that turn one layer's token states into class logits, and
the DARTS mixture over them.

Candidates (our reading of the paper's space; ``../shared/research/compression.md`` §1.5):

    cls_linear      linear on the first token
    mean_linear     masked mean over the tokens → linear
    max_linear      masked max over the tokens → linear
    attention_pool  one learned query attends over the tokens → linear
    conv_max        conv1d (kernel 3) + GELU over the tokens → masked max → linear
    mlp_mean        masked mean → Linear(d, d) + GELU → linear

`MixedExit` is one layer's searchable exit: softmax(α) · (every candidate's logits), α the layer's
architecture parameters (`architecture_parameters`), trained on held-out data by the search.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EXIT_TYPES = ("cls_linear", "mean_linear", "max_linear", "attention_pool", "conv_max", "mlp_mean")


def _mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over tokens: hidden (B, n, d), mask (B, n) → (B, d)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def _max(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked max over tokens → (B, d)."""
    return hidden.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(1)


class ExitHead(nn.Module):
    """One candidate exit: token states (B, n, d) and their mask (B, n) → logits (B, C)."""

    def __init__(self, kind: str, hidden: int, classes: int):
        super().__init__()
        if kind not in EXIT_TYPES:
            raise ValueError(f"unknown exit type {kind!r}; types: {', '.join(EXIT_TYPES)}")
        self.kind = kind
        self.query = nn.Parameter(torch.zeros(hidden)) if kind == "attention_pool" else None
        self.conv = nn.Conv1d(hidden, hidden, kernel_size=3, padding=1) if kind == "conv_max" else None
        self.mlp = nn.Linear(hidden, hidden) if kind == "mlp_mean" else None
        self.classifier = nn.Linear(hidden, classes)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "cls_linear":
            pooled = hidden[:, 0]
        elif self.kind == "mean_linear":
            pooled = _mean(hidden, mask)
        elif self.kind == "max_linear":
            pooled = _max(hidden, mask)
        elif self.kind == "attention_pool":
            scores = (hidden @ self.query).masked_fill(~mask.bool(), float("-inf"))  # (B, n)
            pooled = torch.einsum("bn,bnd->bd", scores.softmax(-1), hidden)
        elif self.kind == "conv_max":
            states = hidden * mask.unsqueeze(-1).to(hidden.dtype)  # padding contributes nothing to the conv
            pooled = _max(F.gelu(self.conv(states.transpose(1, 2)).transpose(1, 2)), mask)
        else:  # mlp_mean
            pooled = F.gelu(self.mlp(_mean(hidden, mask)))
        return self.classifier(pooled)

    def extra_repr(self) -> str:
        return self.kind


class MixedExit(nn.Module):
    """Every candidate exit, mixed by softmax(α) (``alpha``: one architecture logit per type)."""

    def __init__(self, hidden: int, classes: int, kinds: tuple[str, ...] = EXIT_TYPES):
        super().__init__()
        self.kinds = list(kinds)
        self.heads = nn.ModuleList(ExitHead(kind, hidden, classes) for kind in kinds)
        self.alpha = nn.Parameter(torch.zeros(len(kinds)))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([head(hidden, mask) for head in self.heads], dim=0)  # (K, B, C)
        return torch.einsum("k,kbc->bc", self.alpha.softmax(-1), logits)

    def best(self) -> str:
        """The type with the largest α (what discretising keeps)."""
        return self.kinds[int(self.alpha.argmax())]
