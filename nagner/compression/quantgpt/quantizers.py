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


@torch.no_grad()
def best_clip(weight: torch.Tensor, bits: int, candidates: int = 64) -> float:
    """The clip in (0, max|w|] with the smallest quantization MSE on ``weight`` (a grid search)."""
    top = float(weight.abs().max())
    if top == 0:
        return 1.0
    best, best_error = top, float("inf")
    for fraction in torch.linspace(1.0 / candidates, 1.0, candidates).tolist():
        alpha = torch.tensor(top * fraction)
        error = float(((fake_quantize(weight, alpha, bits) - weight) ** 2).mean())
        if error < best_error:
            best, best_error = top * fraction, error
    return best


class ModuleScaledQuantizer(nn.Module):
    """QuantGPT: ``α = γ · mean|w|``, ``γ`` learned per module."""

    def __init__(self, weight: torch.Tensor, bits: int):
        super().__init__()
        self.bits = bits
        mean = float(weight.detach().abs().mean()) or 1.0
        self.gamma = nn.Parameter(torch.tensor(best_clip(weight.detach(), bits) / mean))

    def clip(self, weight: torch.Tensor) -> torch.Tensor:
        return self.gamma * weight.detach().abs().mean()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quantize(weight, self.clip(weight), self.bits)


class PactQuantizer(nn.Module):
    """PACT-style learned clip: ``α``'s gradient comes from clipped weights only."""

    def __init__(self, weight: torch.Tensor, bits: int):
        super().__init__()
        self.bits = bits
        self.alpha = nn.Parameter(torch.tensor(best_clip(weight.detach(), bits)))

    def clip(self, weight: torch.Tensor) -> torch.Tensor:
        return self.alpha

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        n = levels(self.bits)
        alpha = self.alpha.clamp(min=1e-8)
        clipped = torch.maximum(torch.minimum(weight, alpha), -alpha)  # ∂/∂α = ±1 where clipped
        scale = alpha.detach()
        return round_ste(clipped / scale * n) / n * scale


class MinMaxQuantizer(nn.Module):
    """``α = max|w|``: no learned clip (post-training quantization)."""

    def __init__(self, weight: torch.Tensor, bits: int):
        super().__init__()
        self.bits = bits

    def clip(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.detach().abs().max()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quantize(weight, self.clip(weight), self.bits)


class ActivationQuantizer(nn.Module):
    """Dynamic per-tensor symmetric min–max fake quantization of activations (STE)."""

    def __init__(self, bits: int = 8):
        super().__init__()
        self.bits = bits

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return fake_quantize(values, values.detach().abs().max(), self.bits)


WEIGHT_QUANTIZERS = {"quantgpt": ModuleScaledQuantizer, "pact": PactQuantizer, "minmax": MinMaxQuantizer}
