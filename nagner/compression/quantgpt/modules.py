"""Fake-quantized modules swapped into any transformers model, and folding back.

`quantize_model` replaces every `nn.Linear`, GPT-2 `Conv1D` and `nn.Embedding` by a wrapper that
holds the *same* weight parameter and quantizes it (and, for linear layers, its input activations)
on every forward. A weight tied between two modules (input embeddings and LM head) gets one
quantizer, so both see the same quantized tensor. `fold_quantized` writes the quantized weights back
into plain modules: the result is an ordinary transformers model (it saves and loads as usual and
runs in the agent unchanged) whose weights take ``bits``-bit values; activations run in full
precision there. `storage_report` counts the bits such a model needs.

Under `torch.no_grad` a wrapper reuses its last quantized weight while neither the weight nor the
clip has changed (their autograd version counters), so evaluating or decoding with a fake-quantized
model quantizes each weight once, not at every forward; the cache holds one float copy per weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nagner.compression.quantgpt.quantizers import WEIGHT_QUANTIZERS, ActivationQuantizer, clip_count

GRANULARITIES = ("tensor", "channel")


def _is_conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


class _CachedQuantizedWeight(nn.Module):
    """`quantized_weight()`: the inner module's weight through ``weight_quantizer``; cached under
    `torch.no_grad` until the weight or a clip changes."""

    inner: nn.Module
    weight_quantizer: nn.Module

    def quantized_weight(self) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.weight_quantizer(self.inner.weight)
        weight = self.inner.weight
        key = (weight.data_ptr(), weight._version, *(p._version for p in self.weight_quantizer.parameters()))
        cached = self.__dict__.get("_cached")  # kept out of the state dict and of .to()
        if cached is None or cached[0] != key:
            cached = (key, self.weight_quantizer(weight))
            self.__dict__["_cached"] = cached
        return cached[1]


class QuantizedLinear(_CachedQuantizedWeight):
    """An `nn.Linear` or `Conv1D` computing with quantized weights and (optionally) activations."""

    def __init__(self, inner: nn.Module, weight_quantizer: nn.Module, activation_bits: int | None):
        super().__init__()
        self.inner = inner
        self.weight_quantizer = weight_quantizer
        self.activation_quantizer = ActivationQuantizer(activation_bits) if activation_bits else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.activation_quantizer is not None:
            hidden = self.activation_quantizer(hidden)
        weight = self.quantized_weight()
        if _is_conv1d(self.inner):  # weight [in, out]
            return torch.matmul(hidden, weight) + self.inner.bias
        return F.linear(hidden, weight, self.inner.bias)


class QuantizedEmbedding(_CachedQuantizedWeight):
    """An `nn.Embedding` looking rows up in its quantized table."""

    def __init__(self, inner: nn.Embedding, weight_quantizer: nn.Module):
        super().__init__()
        self.inner = inner
        self.weight_quantizer = weight_quantizer

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        inner = self.inner
        return F.embedding(ids, self.quantized_weight(), inner.padding_idx, inner.max_norm, inner.norm_type, inner.scale_grad_by_freq, inner.sparse)


def output_axis(module: nn.Module) -> int:
    """The weight dimension of a module's output channels: rows of `nn.Linear` ([out, in]) and of
    `nn.Embedding` (one per token), columns of GPT-2's `Conv1D` ([in, out])."""
    return 1 if _is_conv1d(module) else 0


def quantize_model(
    model: nn.Module,
    method: str,
    bits: int,
    *,
    activation_bits: int | None = 8,
    embeddings: bool = True,
    granularity: str = "tensor",
) -> nn.Module:
    """Swap fake-quantized wrappers into ``model`` in place (``method``: quantgpt | pact | minmax).
    Embedding tables are quantized unless ``embeddings=False``; embeddings take no activation
    quantizer (their input is token ids). ``granularity``: one clip per weight tensor ("tensor",
    QuantGPT's module-wise scaling) or one per output channel ("channel")."""
    if method not in WEIGHT_QUANTIZERS:
        raise ValueError(f"unknown quantization method {method!r}; choose from {', '.join(WEIGHT_QUANTIZERS)}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; choose from {', '.join(GRANULARITIES)}")
    make = WEIGHT_QUANTIZERS[method]
    shared: dict[int, nn.Module] = {}  # id(weight) → its quantizer, for tied weights

    def quantizer_for(module: nn.Module) -> nn.Module:
        weight = module.weight
        if id(weight) not in shared:
            shared[id(weight)] = make(weight, bits, axis=output_axis(module) if granularity == "channel" else None)
        return shared[id(weight)]

    targets = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and embeddings:
            targets.append((name, module))
        elif isinstance(module, nn.Linear) or _is_conv1d(module):
            targets.append((name, module))
    # Embeddings first, so a tied LM head reuses the embedding's quantizer (and its initial clip).
    targets.sort(key=lambda item: not isinstance(item[1], nn.Embedding))
    for name, module in targets:
        quantizer = quantizer_for(module)
        wrapper = (
            QuantizedEmbedding(module, quantizer)
            if isinstance(module, nn.Embedding)
            else QuantizedLinear(module, quantizer, activation_bits)
        )
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, wrapper)
    return model


def quantized_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, QuantizedLinear | QuantizedEmbedding)]


def quantizer_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The learned clips (γ or α) of every quantizer, each once."""
    seen, params = set(), []
    for _, module in quantized_modules(model):
        for parameter in module.weight_quantizer.parameters():
            if id(parameter) not in seen:
                seen.add(id(parameter))
                params.append(parameter)
    return params


def weight_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter except the quantizers' clips."""
    clips = {id(p) for p in quantizer_parameters(model)}
    return [p for p in model.parameters() if id(p) not in clips]


@torch.no_grad()
def fold_quantized(model: nn.Module) -> nn.Module:
    """Write every quantized weight into its module and unwrap it, in place: a plain transformers
    model whose weights hold the quantized values."""
    folded: set[int] = set()
    for _, module in quantized_modules(model):
        weight = module.inner.weight
        if id(weight) not in folded:
            weight.copy_(module.quantized_weight())
            folded.add(id(weight))
    for name, module in quantized_modules(model):
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, module.inner)
    return model


@torch.no_grad()
def storage_report(model: nn.Module) -> dict:
    """Bits to store ``model`` (with quantized wrappers in place): each quantized tensor at its bit
    width plus its 32-bit clips (one, or one per channel), every other parameter at 32 bits;
    compression ratios against 32-bit storage, with and without embedding tables."""
    quantized = {
        id(module.inner.weight): module.weight_quantizer.bits * module.inner.weight.numel()
        + 32 * clip_count(module.weight_quantizer, module.inner.weight)
        for _, module in quantized_modules(model)
    }
    clips = {id(p) for p in quantizer_parameters(model)}
    # A wrapped table is still an nn.Embedding inside its wrapper.
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    totals = {"full_bits": 0, "bits": 0, "full_bits_no_embeddings": 0, "bits_no_embeddings": 0}
    seen: set[int] = set()
    for parameter in model.parameters():
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        if id(parameter) in clips:  # a quantizer's clips: counted with its tensor
            continue
        full = parameter.numel() * 32
        bits = quantized.get(id(parameter), full)
        totals["full_bits"] += full
        totals["bits"] += bits
        if id(parameter) not in embedding_ids:
            totals["full_bits_no_embeddings"] += full
            totals["bits_no_embeddings"] += bits
    totals["compression"] = totals["full_bits"] / totals["bits"]
    totals["compression_no_embeddings"] = totals["full_bits_no_embeddings"] / max(totals["bits_no_embeddings"], 1)
    return totals
