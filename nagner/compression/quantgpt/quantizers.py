"""Symmetric uniform fake quantizers with a straight-through estimator (STE), for quantization-aware
training (QAT). ``b`` bits give ``n = 2^(b-1) - 1`` positive levels: 8 bits → ±127 steps,
4 → ±7, 2 → ternary {-α, 0, α}. A quantizer returns full-precision tensors holding quantized values.

- `ModuleScaledQuantizer` (QuantGPT's module-wise dynamic scaling): clip ``α = γ · mean|w|`` with a
  learnable ``γ`` per module; ``mean|w|`` is recomputed every step (detached), so the clip follows the
  weights. ``α``'s gradient comes from weights inside the clip range (``(round(u) - u) / n``) and
  outside it (``±1``), as QuantGPT describes; autograd derives both from `round_ste`.
- `PactQuantizer` (PACT-style baseline): a learnable clip ``α`` whose gradient comes only from
  clipped weights (``±1``); inside the range ``α`` is treated as a constant.
- `MinMaxQuantizer`: ``α = max|w|``, nothing learned (post-training quantization).
- `ActivationQuantizer`: 8-bit by default, dynamic per-tensor min–max, no learned parameter; the same
  in every method, so methods differ only in how weights are quantized.

Initial clip of both learned quantizers: the ``α`` minimising the quantization MSE of the initial
weights over a grid (QuantGPT's γ initialisation is not published).

Granularity: one clip per tensor (``axis=None``, QuantGPT's "module-wise"), or one per output channel
(``axis`` = the weight's output dimension: 0 for `nn.Linear` and `nn.Embedding` rows, 1 for GPT-2's
`Conv1D`), the usual granularity of weight quantizers (TSLD's QuantGPT re-implementation has both).
Per channel, ``mean|w|``, ``max|w|``, the MSE search, γ and α are all per channel, shaped to
broadcast against the weight ([out, 1] or [1, out]).
"""

from __future__ import annotations

import torch
from torch import nn


def round_ste(values: torch.Tensor) -> torch.Tensor:
    """Round forward, identity backward."""
    return values + (values.round() - values).detach()


def levels(bits: int) -> int:
    if bits < 2:
        raise ValueError(f"symmetric quantization needs at least 2 bits, got {bits}")
    return 2 ** (bits - 1) - 1


def fake_quantize(values: torch.Tensor, alpha: torch.Tensor, bits: int) -> torch.Tensor:
    """Clip ``values`` to ±``alpha`` and round to ``bits``-bit symmetric levels (STE). A value at
    exactly ±alpha counts as inside the clip: its gradient is 1 (``torch.minimum`` would split it
    0.5 / 0.5 with alpha at the tie, halving the gradient of the largest value under min–max)."""
    n = levels(bits)
    alpha = alpha.clamp(min=1e-8)
    clipped = torch.where(values > alpha, alpha, torch.where(values < -alpha, -alpha, values))
    return round_ste(clipped / alpha * n) / n * alpha


def channel_abs(weight: torch.Tensor, axis: int | None, reduce: str) -> torch.Tensor:
    """``reduce`` ("mean" or "amax") of |w| over the whole tensor (``axis=None``: a scalar) or over
    every dimension but ``axis`` (kept, the others of size 1: broadcasts against ``weight``)."""
    magnitude = weight.abs()
    if axis is None:
        return getattr(magnitude, reduce)()
    dims = [d for d in range(weight.dim()) if d != axis % weight.dim()]
    return getattr(magnitude, reduce)(dim=dims, keepdim=True)


@torch.no_grad()
def best_clip(weight: torch.Tensor, bits: int, candidates: int = 64, axis: int | None = None) -> torch.Tensor:
    """The clip in (0, max|w|] with the smallest quantization MSE on ``weight`` (a grid search over
    fractions of max|w|), per tensor or per channel along ``axis``."""
    top = channel_abs(weight, axis, "amax").clamp(min=1e-8)
    best, best_error = top.clone(), torch.full_like(top, float("inf"))
    for fraction in torch.linspace(1.0 / candidates, 1.0, candidates).tolist():
        alpha = top * fraction
        error = channel_abs((fake_quantize(weight, alpha, bits) - weight) ** 2, axis, "mean")  # MSE
        better = error < best_error
        best, best_error = torch.where(better, alpha, best), torch.where(better, error, best_error)
    return best


class ModuleScaledQuantizer(nn.Module):
    """QuantGPT: ``α = γ · mean|w|``, ``γ`` learned per module (or per channel along ``axis``)."""

    def __init__(self, weight: torch.Tensor, bits: int, axis: int | None = None):
        super().__init__()
        self.bits, self.axis = bits, axis
        mean = channel_abs(weight.detach(), axis, "mean").clamp(min=1e-8)
        self.gamma = nn.Parameter(best_clip(weight.detach(), bits, axis=axis) / mean)

    def clip(self, weight: torch.Tensor) -> torch.Tensor:
        return self.gamma * channel_abs(weight.detach(), self.axis, "mean")

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quantize(weight, self.clip(weight), self.bits)


class PactQuantizer(nn.Module):
    """PACT-style learned clip: ``α``'s gradient comes from clipped weights only."""

    def __init__(self, weight: torch.Tensor, bits: int, axis: int | None = None):
        super().__init__()
        self.bits, self.axis = bits, axis
        self.alpha = nn.Parameter(best_clip(weight.detach(), bits, axis=axis))

    def clip(self, weight: torch.Tensor) -> torch.Tensor:
        return self.alpha

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        n = levels(self.bits)
        alpha = self.alpha.clamp(min=1e-8)
        clipped = torch.maximum(torch.minimum(weight, alpha), -alpha)  # ∂/∂α = ±1 where clipped
        scale = alpha.detach()
        return round_ste(clipped / scale * n) / n * scale


class MinMaxQuantizer(nn.Module):
    """``α = max|w|`` (per tensor or per channel): no learned clip (post-training quantization)."""

    def __init__(self, weight: torch.Tensor, bits: int, axis: int | None = None):
        super().__init__()
        self.bits, self.axis = bits, axis

    def clip(self, weight: torch.Tensor) -> torch.Tensor:
        return channel_abs(weight.detach(), self.axis, "amax")

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quantize(weight, self.clip(weight), self.bits)


def clip_count(quantizer: nn.Module, weight: torch.Tensor) -> int:
    """How many clips (32-bit scales) ``quantizer`` stores for ``weight``: 1, or one per channel."""
    return 1 if quantizer.axis is None else weight.shape[quantizer.axis]


class ActivationQuantizer(nn.Module):
    """Dynamic per-tensor symmetric min–max fake quantization of activations (STE)."""

    def __init__(self, bits: int = 8):
        super().__init__()
        self.bits = bits

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return fake_quantize(values, values.detach().abs().max(), self.bits)


WEIGHT_QUANTIZERS = {"quantgpt": ModuleScaledQuantizer, "pact": PactQuantizer, "minmax": MinMaxQuantizer}
