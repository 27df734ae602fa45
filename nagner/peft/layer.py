"""`AdaptedLayer`: a host linear layer with named adapters beside it.

The host module is kept whole as ``base_layer`` (detaching puts it back), the adapters live in
``adapters[name]``. Forward: ``y = base_layer(x)``, then every active, unmerged adapter in turn.
Merging adds an adapter's ΔW to the host weight in place and unmerging subtracts it again (half
precision weights are updated through float32, so each takes one rounding: ``W + ΔW − ΔW`` is W to
within a rounding step of its dtype). No copy of the weight is held: for a 7B model in bf16 a copy
would be 13 GB. ``keep_original=True`` keeps one per layer instead, for an unmerge that restores
the weight bit for bit.
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
    @property
    def keeps_original(self) -> bool:
        """Whether a copy of the unmerged weight is held (``merge(..., keep_original=True)``)."""
        return self._original_weight is not None

    @torch.no_grad()
    def merge(self, names: list[str], keep_original: bool = False) -> None:
        """Add the ΔW of ``names`` (mergeable, not yet merged) to the host weight; with
        ``keep_original``, first keep a copy of the unmerged weight (see the module docstring)."""
        for name in names:
            if name in self.merged:
                continue
            adapter: Adapter = self.adapters[name]
            if not adapter.mergeable:
                raise TypeError(f"adapter {name!r} ({type(adapter).__name__}) cannot be merged into weights")
            if keep_original and self._original_weight is None and not self.merged:
                self._original_weight = self.weight.detach().clone()
            self._add_delta(adapter.delta_weight(), 1.0)
            self.merged.append(name)

    @torch.no_grad()
    def unmerge(self, names: list[str] | None = None) -> None:
        """Take ``names`` (default: all) out of the host weight: subtract their ΔW, or, when the
        original weight was kept, restore it exactly and add the adapters that stay merged again."""
        names = list(self.merged) if names is None else [n for n in names if n in self.merged]
        if not names:
            return
        if self._original_weight is not None:
            keep = [n for n in self.merged if n not in names]
            self.weight.copy_(self._original_weight)
            self.merged = []
            self._original_weight = None
            self.merge(keep, keep_original=bool(keep))
            return
        for name in reversed(names):
            self._add_delta(self.adapters[name].delta_weight(), -1.0)
            self.merged.remove(name)

    def _add_delta(self, delta: torch.Tensor, sign: float) -> None:
        """W ← W + sign·ΔW (delta (out, in)), rounded once to W's dtype."""
        weight, delta = self.weight, self._as_stored(delta)
        if weight.dtype in (torch.float32, torch.float64):
            weight.add_(delta.to(weight.dtype), alpha=sign)
        else:  # bf16 / fp16: add in float32, one rounding, one layer's float32 copy at a time
            weight.copy_(weight.float().add_(delta.float(), alpha=sign).to(weight.dtype))

    def forget_original(self) -> None:
        """Drop the kept original weight (merged adapters become permanent)."""
        self._original_weight = None
        self.merged = []
