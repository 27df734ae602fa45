"""Mixed-adapter batches: every sample of a batch names its own adapter (or none).

For LoRA-family adapters one layer's deltas for the whole batch are two batched matmuls over
per-sample gathered factors (the punica / S-LoRA "BGMV" idea), not a loop over adapters:

    bank Aᵀ: (N+1, d_in, r_max), bank Bᵀ: (N+1, r_max, d_out)   row 0 = zeros (no adapter),
            smaller ranks zero-padded, scaling and rank maps folded in (`Adapter.as_lora`)
    y + Δ = baddbmm(y, bmm(x, Aᵀ[rows]), Bᵀ[rows])   x: (b, t, d_in), rows: (b,) → (b, t, d_out)

Gathering the factors per sample costs about as much as one adapter's matmuls (r ≪ t·d), so a
batch mixing many adapters runs nearly as fast as one adapter. With a few tokens per row
(decoding) the gather would dominate; there every adapter's A is applied at once and the other
adapters' ranks are masked out (``DENSE_LIMIT``). The bank is built once per layer and rebuilt
only when an adapter is added, replaced or changed (module identity, tensor versions and data);
that check runs once per layer when an `adapter_batch` block opens, not at every forward pass or
decoding step inside it, and the per-row bank index is built once per block too. Other adapters
(bottleneck, prompt-conditioned) run per adapter on their samples. Inference only: the bank holds
no gradients, adapter dropout is not applied, and adapters must not change inside a block.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from nagner.peft.adapter import add_to_output
from nagner.peft.attach import adapted_layers, adapter_names
from nagner.peft.layer import AdaptedLayer

# Rows of at most this many (tokens × bank rows) take the dense path (see `_batched_lora`);
# measured on CPU: with 8 adapters the dense path wins for 1–4 tokens, the gathered one from 8.
DENSE_LIMIT = 32


class _LayerBank:
    """Stacked, padded LoRA factors of one layer's adapters: ``At`` (N+1, d_in, r_max) and
    ``Bt`` (N+1, r_max, d_out), row 0 all zeros; ``A_all`` (d_in, (N+1)·r_max) is ``At`` side by
    side and ``slot_owner`` ((N+1)·r_max,) the bank row of each of its columns."""

    def __init__(self, layer: AdaptedLayer, names: list[str]):
        pairs = [layer.adapters[n].as_lora() for n in names]
        rank = max([A.shape[0] for A, _ in pairs] + [1])
        like = {"dtype": pairs[0][0].dtype, "device": pairs[0][0].device}
        self.At = torch.zeros(len(names) + 1, layer.in_features, rank, **like)
        self.Bt = torch.zeros(len(names) + 1, rank, layer.out_features, **like)
        for i, (A, B) in enumerate(pairs, start=1):
            self.At[i, :, : A.shape[0]] = A.T
            self.Bt[i, : B.shape[1]] = B.T
        self.A_all = self.At.permute(1, 0, 2).reshape(layer.in_features, -1)
        self.slot_owner = torch.arange(len(names) + 1, device=like["device"]).repeat_interleave(rank)
        self.names = list(names)
        self.position = {n: i for i, n in enumerate(names)}
        self.adapters = [layer.adapters[n] for n in names]
        self.tensors = [[*a.parameters(), *a.buffers()] for a in self.adapters]
        self.versions = [_versions(tensors) for tensors in self.tensors]

    def fits(self, layer: AdaptedLayer, names: list[str], used: set[str]) -> bool:
        """Whether the bank still holds ``names`` and, for the adapters a batch ``used``, their
        current weights: False once an adapter is added, removed or replaced (a new one under an old
        name), or one of a used adapter's tensors is written in place (a training step, a load) or
        given new data. Rows the batch does not use are checked when a batch uses them."""
        if names != self.names:
            return False
        for name in used:
            i = self.position.get(name)
            if i is not None and (
                layer.adapters[name] is not self.adapters[i] or _versions(self.tensors[i]) != self.versions[i]
            ):
                return False
        return True


def _versions(tensors: list[torch.Tensor]) -> list[tuple[int, int]]:
    return [(t._version, t.data_ptr()) for t in tensors]


class MixedBatch:
    """Per-sample adapter choice for the forward passes inside `adapter_batch`."""

    def __init__(self, names: list[str | None], model_adapters: list[str]):
        self.sample_names = names
        self.used = {n for n in names if n is not None}
        self.model_adapters = model_adapters
        self._rows: dict[tuple, torch.Tensor] = {}  # (layer's adapters, batch rows, device) → bank rows
        self._names: dict[int, tuple[list[str], list[str]]] = {}  # layer → (LoRA-family, other) adapters

    def bank_rows(self, names: list[str], rows: int, device: torch.device) -> torch.Tensor:
        """Each batch row's row in a bank of ``names`` (0 = no adapter there); cached, as every
        layer with the same adapters and every decoding step asks the same. Rows may be a
        multiple of the named samples (beam search and num_return_sequences repeat each
        sample's rows in place)."""
        key = (tuple(names), rows, device)
        if key not in self._rows:
            samples = len(self.sample_names)
            if rows % samples:
                raise ValueError(f"a batch of {rows} rows does not fit {samples} adapter names")
            position = {n: i for i, n in enumerate(names, start=1)}
            index = torch.tensor([position.get(n, 0) for n in self.sample_names], device=device)
            self._rows[key] = index.repeat_interleave(rows // samples)
        return self._rows[key]

    def apply(self, layer: AdaptedLayer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if layer.merged:
            raise RuntimeError("mixed-adapter batches need unmerged adapters: call unmerge(model) first")
        lora, others = self._names[id(layer)]
        if lora:
            y = self._batched_lora(layer, x, y, lora)
        for name in others:
            rows = self.bank_rows([name], x.shape[0], x.device).nonzero().squeeze(1)
            if rows.numel():
                y = y.index_copy(0, rows, layer.adapters[name](x.index_select(0, rows), y.index_select(0, rows)))
        return y

    def prepare(self, layer: AdaptedLayer) -> None:
        """Note the layer's adapters (LoRA family, others; in the model's order) and make sure its
        bank holds its current LoRA-family adapters (built or rebuilt here): once per block."""
        present = [n for n in self.model_adapters if n in layer.adapters]
        names = [n for n in present if layer.adapters[n].lora_family]
        self._names[id(layer)] = (names, [n for n in present if n not in names])
        bank = getattr(layer, "_mixed_bank", None)
        if names and (bank is None or not bank.fits(layer, names, self.used)):
            with torch.no_grad():
                layer._mixed_bank = _LayerBank(layer, names)

    def _batched_lora(
        self, layer: AdaptedLayer, x: torch.Tensor, y: torch.Tensor, names: list[str]
    ) -> torch.Tensor:
        """y + each row's ΔW·x, for the LoRA-family adapters ``names`` of this layer."""
        bank = layer._mixed_bank  # checked when the block opened (`prepare`)
        rows = self.bank_rows(names, x.shape[0], x.device)  # (b,)
        b, d_out = x.shape[0], y.shape[-1]
        x = x.reshape(b, -1, x.shape[-1]).to(bank.At.dtype)  # (b, t, d_in)
        if x.shape[1] * bank.At.shape[0] <= DENSE_LIMIT:
            # Few tokens per row (decoding): gathering (d_in + d_out)·r factors per row would cost
            # more than multiplying by every adapter's A at once and masking other adapters' ranks.
            mask = rows.unsqueeze(1) == bank.slot_owner  # (b, (N+1)·r)
            h = torch.matmul(x, bank.A_all) * mask.unsqueeze(1)  # (b, t, (N+1)·r)
            factors = (h.reshape(-1, h.shape[-1]), bank.Bt.reshape(-1, d_out))  # B stacked to match
            if y.dtype == bank.Bt.dtype:
                return add_to_output(y.reshape(-1, d_out), *factors).reshape(y.shape)
            return y + (factors[0] @ factors[1]).reshape(y.shape).to(y.dtype)
        h = torch.bmm(x, bank.At.index_select(0, rows))  # (b, t, r)
        B = bank.Bt.index_select(0, rows)  # (b, r, d_out)
        if y.dtype == bank.Bt.dtype:  # add in the same kernel
            return add_to_output(y.reshape(b, -1, d_out), h, B).reshape(y.shape)
        return y + torch.bmm(h, B).reshape(y.shape).to(y.dtype)


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
        plan.prepare(layer)
        layer.mixed_batch = plan
    try:
        yield
    finally:
        for layer in layers:
            layer.mixed_batch = None
