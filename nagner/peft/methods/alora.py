"""ALoRA (Liu et al., NAACL 2024, *Allocating* LoRA; not `peft`'s Activated LoRA): LoRA with binary
rank gates, whose ranks are re-allocated between modules during training.

    y = W0·x + b + s · B·(m ⊙ A·dropout(x))        m: (r,) in {0, 1}, all 1 at init, s = α/r₀

The gates are a buffer ``rank_mask`` (saved with the adapter, never trained). With every gate on
the adapter is exactly LoRA. The scaling is fixed per module at α/r₀ with r₀ = the config's ``r``
(the initial per-module rank, R_target / N_mod in the paper), whatever rank the module holds
later, so moving ranks between modules never rescales the ranks that stay. Allocation rounds
(`nagner.peft.methods.alora_allocation`) prune the lowest-importance ranks and give them to other
modules, writing every module's rank into the config's ``rank_pattern``.

For the importance scores many gate settings run in one forward pass: `ablated_ranks` sets a
(K, r) mask per module, and the caller repeats its batch K times (copy k = rows k·b … (k+1)·b − 1);
`mix_ranks` then gates copy k of the rank activations with mask row k. This needs batch-first
activations (or a batch-major flattening), as every `transformers` model has.

`as_lora` (merge, export, mixed batches) drops the ranks that are off. Caveat: mixed-adapter
batches cache their factor bank keyed on parameter versions only, so a gate flipped by hand (an
allocation round resizes the parameters and is seen) is missed by a bank built before the flip.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from nagner.peft.attach import DEFAULT_NAME, adapted_layers, adapter_config
from nagner.peft.config import register_method
from nagner.peft.layer import AdaptedLayer
from nagner.peft.methods.lora import LoraAdapter, LoraConfig

V = TypeVar("V")


def module_pattern(values: dict[str, V]) -> dict[str, V]:
    """A ``rank_pattern`` / ``alpha_pattern`` naming each module exactly: escaped full names,
    longest first (a pattern also matches longer names ending in it, and the first match wins)."""
    return {re.escape(name): values[name] for name in sorted(values, key=lambda n: (-len(n), n))}


@register_method
@dataclass
class AloraConfig(LoraConfig):
    """ALoRA: the LoRA fields; ``r`` is the initial rank of every module (r₀, also the scaling's
    denominator) and ``rank_pattern`` holds the per-module ranks after allocation rounds."""

    method = "alora"
    peft_type = "ALORA"
    peft_native = False

    def build_adapter(self, layer: AdaptedLayer, module_name: str) -> AloraAdapter:
        r, alpha = self.rank_and_alpha(module_name)
        return AloraAdapter(layer.in_features, layer.out_features, r, alpha, self)


class AloraAdapter(LoraAdapter):
    """LoRA plus the gate buffer ``rank_mask`` (r,) and, while `ablated_ranks` runs, ``ablation``
    (K, r): one gate setting per copy of the batch."""

    def __init__(self, d_in: int, d_out: int, r: int, alpha: float, config: AloraConfig):
        super().__init__(d_in, d_out, r, alpha, config)
        self.scaling = (
            alpha / math.sqrt(config.r) if config.use_rslora else (alpha / config.r if config.r else 0.0)
        )
        self.register_buffer("rank_mask", torch.ones(r))  # (r,)
        self.ablation: torch.Tensor | None = None  # (K, r)

    def mix_ranks(self, h: torch.Tensor) -> torch.Tensor:
        """h (…, r) → m ⊙ h; under `ablated_ranks`, copy k of the batch gets mask row k."""
        if self.ablation is None or self.r == 0:
            return h * self.rank_mask
        copies = self.ablation.shape[0]
        if h.shape[0] % copies:
            raise ValueError(f"a batch of {h.shape[0]} rows is not {copies} copies of one batch")
        gated = h.reshape(copies, -1, self.r) * self.ablation[:, None, :].to(h.dtype)  # (K, rows·…, r)
        return gated.reshape(h.shape)

    def rank_matrix(self) -> torch.Tensor:
        """diag(m) (r, r)."""
        return torch.diag(self.rank_mask)

    def active_ranks(self) -> torch.Tensor:
        """Indices of the ranks that are on (r',)."""
        return self.rank_mask.nonzero().squeeze(1)

    def as_lora(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A (r', d_in), B (d_out, r')) over the r' ranks that are on, scaling folded into B."""
        keep = self.active_ranks()
        return self.weight_A()[keep], self.weight_B()[:, keep] * self.scaling

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, on={int(self.rank_mask.sum())}"


def alora_adapters(model: nn.Module, name: str = DEFAULT_NAME) -> dict[str, AloraAdapter]:
    """The ALoRA adapters named ``name`` by module name; TypeError when ``name`` is not ALoRA."""
    config = adapter_config(model, name)
    if not isinstance(config, AloraConfig):
        raise TypeError(f"adapter {name!r} is {type(config).__name__}, not ALoRA")
    adapters = {
        m: layer.adapters[name] for m, layer in adapted_layers(model).items() if name in layer.adapters
    }
    merged = [m for m, layer in adapted_layers(model).items() if name in layer.merged]
    if merged:
        raise RuntimeError(
            f"adapter {name!r} is merged in {merged[0]}: unmerge it before scoring or allocating"
        )
    return adapters


@contextmanager
def ablated_ranks(adapters: dict[str, AloraAdapter], masks: dict[str, torch.Tensor]) -> Iterator[None]:
    """Inside, module m gates copy k of every batch with ``masks[m][k]`` (K, r_m) instead of its
    ``rank_mask``; every module needs a mask with the same K."""
    try:
        for module_name, adapter in adapters.items():
            adapter.ablation = masks[module_name]
        yield
    finally:
        for adapter in adapters.values():
            adapter.ablation = None
