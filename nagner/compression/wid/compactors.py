"""The modules WID puts into a teacher: compactors around every linear layer and the embeddings,
LayerNorms over the kept hidden dimensions, and the masks they share.

A linear layer y = x·Wᵀ + b gets a row compactor R (in × in) on its input and a column compactor
K (out × out) on its output, both identity at the start:

    y = ((x·R)·Wᵀ + b)·K                 masked: rows of R (input dims), columns of K (output dims)

An embedding table gets a column compactor E (H × H) on its output (the three BERT embeddings are
summed, so each can take E: (a + b + c)·E = a·E + b·E + c·E). In ``hard`` mode masked rows and
columns are zero (what the converted student computes); otherwise they stay in the computation
while the schedule squeezes them towards zero (`nagner.compression.wid.schedule`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WidMasks(nn.Module):
    """The keep-masks (bool buffers, True = kept) by name: ``hidden`` for the residual stream,
    ``attention.{l}`` and ``ffn.{l}`` per layer; ``active`` once the first masks are set; ``hard``
    zeroes masked rows and columns in the forward pass."""

    def __init__(self, sizes: dict[str, int]):
        super().__init__()
        for name, size in sizes.items():
            self.register_buffer(_buffer(name), torch.ones(size, dtype=torch.bool))
        self.names = list(sizes)
        self.active = False
        self.hard = False

    def keep(self, name: str) -> torch.Tensor:
        return getattr(self, _buffer(name))

    def set(self, name: str, keep: torch.Tensor) -> None:
        getattr(self, _buffer(name)).copy_(keep)


def _buffer(name: str) -> str:
    return "keep_" + name.replace(".", "_")


class CompactedLinear(nn.Module):
    """``base`` (an nn.Linear, kept whole as ``teacher``) between a row compactor ``row`` (in × in)
    and a column compactor ``column`` (out × out); ``in_mask`` / ``out_mask`` name their masks."""

    def __init__(self, base: nn.Linear, in_mask: str, out_mask: str, masks: WidMasks):
        super().__init__()
        self.teacher = base
        self.in_mask, self.out_mask = in_mask, out_mask
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.row = nn.Parameter(torch.eye(base.in_features, **like))  # (in, in)
        self.column = nn.Parameter(torch.eye(base.out_features, **like))  # (out, out)
        object.__setattr__(self, "masks", masks)  # shared, owned by the model (not a submodule here)

    def compactors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, K), with masked rows / columns zero in hard mode."""
        if not self.masks.hard:
            return self.row, self.column
        return self.row * self.masks.keep(self.in_mask)[:, None], self.column * self.masks.keep(self.out_mask)[None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """((x·R)·Wᵀ + b)·K, computed as x·(R·Wᵀ·K) + b·K: the compactors are folded into the
        weight once per call (in²·out + in·out² multiply-adds) instead of applied to every token
        (tokens × (in² + out²)), several times cheaper at training batch sizes."""
        row, column = self.compactors()
        weight = (row @ self.teacher.weight.T @ column).T  # (out, in)
        bias = None if self.teacher.bias is None else self.teacher.bias @ column  # (out,)
        return F.linear(x, weight, bias)


class CompactedEmbedding(nn.Module):
    """An embedding table followed by the shared embedding column compactor ``column`` (H × H)."""

    def __init__(self, base: nn.Embedding, column: nn.Parameter, masks: WidMasks):
        super().__init__()
        self.teacher = base
        object.__setattr__(self, "column", column)  # one compactor for the three tables
        object.__setattr__(self, "masks", masks)

    @property
    def weight(self) -> torch.Tensor:  # what transformers reads (e.g. to tie an LM head)
        return self.teacher.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        column = self.column
        if self.masks.hard:
            column = column * self.masks.keep("hidden")[None, :]
        return self.teacher(ids) @ column


class MaskedLayerNorm(nn.Module):
    """``base`` LayerNorm whose mean and variance cover only the kept hidden dimensions once masks
    are active (the squeezed dimensions stop steering the normalisation before they are removed);
    masked outputs are zero in hard mode."""

    def __init__(self, base: nn.LayerNorm, masks: WidMasks):
        super().__init__()
        self.teacher = base
        object.__setattr__(self, "masks", masks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.masks.active:
            return self.teacher(x)
        keep = self.masks.keep("hidden")
        kept = x[..., keep]  # (…, H')
        mean = kept.mean(-1, keepdim=True)
        var = kept.var(-1, unbiased=False, keepdim=True)
        out = (x - mean) / torch.sqrt(var + self.teacher.eps) * self.teacher.weight + self.teacher.bias
        return out * keep if self.masks.hard else out
