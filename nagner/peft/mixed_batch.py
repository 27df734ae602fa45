"""Mixed-adapter batches: every sample of a batch names its own adapter (or none).

For LoRA-family adapters one layer's deltas for the whole batch are two batched matmuls over
per-sample gathered factors (the punica / S-LoRA "BGMV" idea), not a loop over adapters:

    bank A: (N+1, r_max, d_in), bank B: (N+1, d_out, r_max)   row 0 = zeros (no adapter),
            smaller ranks zero-padded, scaling and rank maps folded in (`Adapter.as_lora`)
    A_s = A[index] (b, r, d_in);  Δ = bmm(bmm(x, A_sᵀ), B_sᵀ)   x: (b, t, d_in) → (b, t, d_out)

The bank is built once per layer and rebuilt only when an adapter is added, removed or trained
(tensor versions change). Other adapters (bottleneck, prompt-conditioned) run per adapter on
their samples. Inference only: adapter dropout is not applied.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from nagner.peft.attach import adapted_layers, adapter_names
from nagner.peft.layer import AdaptedLayer


class _LayerBank:
    """Stacked, padded LoRA factors of one layer's adapters."""

    def __init__(self, layer: AdaptedLayer, names: list[str]):
        pairs = [layer.adapters[n].as_lora() for n in names]
        rank = max([A.shape[0] for A, _ in pairs] + [1])
        first = layer.adapters[names[0]].as_lora()[0]
        self.A = torch.zeros(len(names) + 1, rank, layer.in_features, dtype=first.dtype, device=first.device)
        self.B = torch.zeros(len(names) + 1, layer.out_features, rank, dtype=first.dtype, device=first.device)
        for i, (A, B) in enumerate(pairs, start=1):
            self.A[i, : A.shape[0]] = A
            self.B[i, :, : B.shape[1]] = B
        self.key = _bank_key(layer, names)


def _bank_key(layer: AdaptedLayer, names: list[str]) -> tuple:
    return tuple((n, tuple(p._version for p in layer.adapters[n].parameters())) for n in names)


class MixedBatch:
    """Per-sample adapter choice for the forward passes inside `adapter_batch`."""

    def __init__(self, names: list[str | None], model_adapters: list[str]):
        self.sample_names = names
        self.model_adapters = model_adapters
        self._index: dict[torch.device, torch.Tensor] = {}

    def index(self, rows: int, device: torch.device) -> torch.Tensor:
        """Per-row bank index (0 = no adapter); rows may be a multiple of the named samples
        (beam search and num_return_sequences repeat each sample's rows in place)."""
        if device not in self._index:
            position = {n: i + 1 for i, n in enumerate(self.model_adapters)}
            values = [position[n] if n is not None else 0 for n in self.sample_names]
            self._index[device] = torch.tensor(values, device=device)
        index = self._index[device]
        if rows == index.shape[0]:
            return index
        if rows % index.shape[0]:
            raise ValueError(f"a batch of {rows} rows does not fit {index.shape[0]} adapter names")
        return index.repeat_interleave(rows // index.shape[0])

    def apply(self, layer: AdaptedLayer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if layer.merged:
            raise RuntimeError("mixed-adapter batches need unmerged adapters: call unmerge(model) first")
        index = self.index(x.shape[0], x.device)
        names = [n for n in self.model_adapters if n in layer.adapters]
        lora = [n for n in names if layer.adapters[n].lora_family]
        if lora:
            y = y + self._batched_lora(layer, x, index, lora).to(y.dtype)
        for name in names:
            if name in lora:
                continue
            rows = (index == self.model_adapters.index(name) + 1).nonzero().squeeze(1)
            if rows.numel():
                y = y.index_copy(0, rows, layer.adapters[name](x.index_select(0, rows), y.index_select(0, rows)))
        return y

    def _batched_lora(self, layer: AdaptedLayer, x: torch.Tensor, index: torch.Tensor, names: list[str]) -> torch.Tensor:
        # Map model-wide adapter positions to this layer's bank rows (0 = none, also for adapters
        # that are not LoRA-family or do not cover this layer).
        bank = getattr(layer, "_mixed_bank", None)
        if bank is None or bank.key != _bank_key(layer, names):
            with torch.no_grad():
                bank = _LayerBank(layer, names)
            layer._mixed_bank = bank
        to_row = torch.zeros(len(self.model_adapters) + 1, dtype=torch.long, device=x.device)
        for row, name in enumerate(names, start=1):
            to_row[self.model_adapters.index(name) + 1] = row
        rows = to_row[index]  # (b,)
        flat = x.dim() == 2
        h = x.unsqueeze(1) if flat else x.reshape(x.shape[0], -1, x.shape[-1])  # (b, t, d_in)
        h = torch.bmm(h.to(bank.A.dtype), bank.A[rows].transpose(1, 2))  # (b, t, r)
        delta = torch.bmm(h, bank.B[rows].transpose(1, 2))  # (b, t, d_out)
        return delta.squeeze(1) if flat else delta.reshape(*x.shape[:-1], delta.shape[-1])


@contextmanager
def adapter_batch(model: nn.Module, names: Sequence[str | None]) -> Iterator[None]:
    """Inside, sample i of every forward pass (and of ``generate``) uses adapter ``names[i]``;
    None means the base model. The active-adapter setting is ignored meanwhile."""
    known = adapter_names(model)
    unknown = sorted({n for n in names if n is not None and n not in known})
    if unknown:
        raise KeyError(f"no adapter named {', '.join(map(repr, unknown))}; attached: {', '.join(known) or 'none'}")
    plan = MixedBatch(list(names), known)
    layers = list(adapted_layers(model).values())
    for layer in layers:
        layer.mixed_batch = plan
    try:
        yield
    finally:
        for layer in layers:
            layer.mixed_batch = None
