"""`AdaptedLayer`: a host linear layer with named adapters beside it.

The host module is kept whole as ``base_layer`` (detaching puts it back), the adapters live in
``adapters[name]``. Forward: ``y = base_layer(x)``, then every active, unmerged adapter in turn.
Merging adds an adapter's ΔW to the host weight; the first merge keeps a copy of the original
weight, so unmerging restores it bit for bit (not ``W + ΔW − ΔW``, which rounds).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from nagner.peft.adapter import Adapter


class AdaptedLayer(nn.Module):
    """A linear host (``nn.Linear`` or GPT-2's ``Conv1D``) plus named adapters."""

    def __init__(self, base_layer: nn.Module):
        super().__init__()
        self.base_layer = base_layer
        self.adapters = nn.ModuleDict()
        self.active: list[str] = []
        self.merged: list[str] = []
        self.disabled = False
        self.mixed_batch = None  # set by nagner.peft.mixed_batch while a mixed-adapter batch runs
        self._original_weight: torch.Tensor | None = None

    # ------------------------------------------------------------------------------- host shape
    @property
    def in_features(self) -> int:
        if isinstance(self.base_layer, Conv1D):
            return self.base_layer.weight.shape[0]
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        if isinstance(self.base_layer, Conv1D):
            return self.base_layer.nf
        return self.base_layer.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The host weight as stored (Linear: (out, in); Conv1D: (in, out))."""
        return self.base_layer.weight

    def _as_stored(self, delta: torch.Tensor) -> torch.Tensor:
        """ΔW (out, in) in the host's storage layout."""
        return delta.T if isinstance(self.base_layer, Conv1D) else delta

    # ----------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        y = self.base_layer(x, *args, **kwargs)
        if self.disabled:
            return y
        if self.mixed_batch is not None:
            return self.mixed_batch.apply(self, x, y)
        for name in self.active:
            if name not in self.merged:
                y = self.adapters[name](x, y)
        return y

    # ------------------------------------------------------------------------------------ merging
    @torch.no_grad()
    def merge(self, names: list[str]) -> None:
        """Add the ΔW of ``names`` (mergeable, not yet merged) to the host weight."""
        for name in names:
            if name in self.merged:
                continue
            adapter: Adapter = self.adapters[name]
            if not adapter.mergeable:
                raise TypeError(f"adapter {name!r} ({type(adapter).__name__}) cannot be merged into weights")
            if self._original_weight is None:
                self._original_weight = self.weight.detach().clone()
            self.weight.add_(self._as_stored(adapter.delta_weight()).to(self.weight.dtype))
            self.merged.append(name)

    @torch.no_grad()
    def unmerge(self, names: list[str] | None = None) -> None:
        """Take ``names`` (default: all) out of the host weight: the original weight is restored
        exactly and the adapters that stay merged are added again."""
        names = list(self.merged) if names is None else [n for n in names if n in self.merged]
        if not names:
            return
        keep = [n for n in self.merged if n not in names]
        self.weight.copy_(self._original_weight)
        self.merged = []
        self._original_weight = None
        self.merge(keep)

    def forget_original(self) -> None:
        """Drop the kept original weight (merged adapters become permanent)."""
        self._original_weight = None
        self.merged = []
