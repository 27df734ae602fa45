"""The ALoRA adapter: ALoRA (Liu et al., NAACL 2024, *Allocating* LoRA; not `peft`'s Activated LoRA): LoRA with binary
rank gates, whose ranks are re-allocated between modules during training.

    y = W0·x + b + s · B·(m ⊙ A·dropout(x))        m: (r,) in {0, 1}, all 1 at init, s = α/r₀

The gates are a buffer ``rank_mask`` (saved with the adapter, never trained). With every gate on
the adapter is exactly LoRA. The scaling is fixed per module at α/r₀ with r₀ = the config's ``r``
(the initial per-module rank, R_target / N_mod in the paper), whatever rank the module holds
later, so moving ranks between modules never rescales the ranks that stay. Allocation rounds
(`nagner.peft.methods.alora.allocation`) prune the lowest-importance ranks and give them to other
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
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from nagner.peft.attach import DEFAULT_NAME, adapted_layers, adapter_config
from nagner.peft.methods.lora import LoraAdapter, LoraConfig


class AloraAdapter(LoraAdapter):
    """LoRA plus the gate buffer ``rank_mask`` (r,) and, while `ablated_ranks` runs, ``ablation``
    (K, r): one gate setting per copy of the batch."""

    def __init__(self, d_in: int, d_out: int, r: int, alpha: float, config: LoraConfig):  # an `AloraConfig` (its LoRA fields)
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
    adapters = {
        m: layer.adapters[name] for m, layer in adapted_layers(model).items() if name in layer.adapters
    }
    if not adapters or not all(isinstance(adapter, AloraAdapter) for adapter in adapters.values()):
        raise TypeError(f"adapter {name!r} is {type(adapter_config(model, name)).__name__}, not ALoRA")
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
