"""`TensorTrainLinear`: a linear map whose weight is a tensor train, in LoRETTA's format.

As in the official LoRETTA code, the weight W (in, out) is the row-major reshape of a d-way tensor
with modes n_1 … n_d (n_1···n_d = in·out) held as a tensor train:

    G_k: (r_{k-1}, n_k, r_k)        r_0 = r_d = 1, every inner TT rank r_k = ``rank``
    T[a_1, …, a_d] = G_1[:, a_1, :] · G_2[:, a_2, :] ··· G_d[:, a_d, :]        W = T.reshape(in, out)
    y = x·W + b

Parameters: Σ_k r_{k-1}·n_k·r_k = R·(n_1 + n_d) + R²·(n_2 + … + n_{d-1}); 4096×64 at R = 5 with
modes [16, 16, 16, 4, 4, 4]: 1,100 (a dense 4096×64 has 262,144).

Modes (`tt_shape`): the official code's table for a narrow side r and a wide side h
(``TT_SHAPES[r][h]``, the wide side's modes first; for (16, 4096) the modes of the paper's LLaMA
experiments, the February 2024 code, where the current table differs), listed for the wide→narrow
direction and reversed for narrow→wide so that the row modes come first either way (the official
code uses one list for both; the parameter count is the same). Shapes outside the table — the
official code raises there — take the fewest modes d ≥ 2 with 16^d ≥ in·out, sizes as equal as the
prime factors allow, largest first (`balanced_factors`).

Init (the official one): core k ~ N(0, 1)/√r_k · σ^{1/d} with σ = √(1/(in + out)), so each entry of
W has variance about σ²; a bias ~ U(−1/√out, 1/√out).

In eval mode (or under ``torch.no_grad``) the contracted W is kept and reused until a core changes,
so decoding does not rebuild it for every token.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_MODE = 16  # the largest mode size the fallback rule aims for

# narrow side r → wide side h → modes (wide side first), from the official LoRETTA code; the entry
# (16, 4096) is the one of the paper's LLaMA experiments. Entries whose product is not r·h (a few
# in the official table) are left out: those shapes use the fallback rule.
TT_SHAPES: dict[int, dict[int, list[int]]] = {
    5: {768: [5, 8, 12, 8], 1024: [4, 8, 5, 8, 4], 1280: [4, 8, 5, 8, 5], 1536: [4, 8, 5, 8, 6],
        1600: [5, 8, 5, 8, 5], 2304: [5, 8, 8, 4, 9], 4096: [16, 16, 5, 4, 4], 5120: [5, 8, 10, 8, 8],
        8192: [4, 16, 16, 10, 4]},
    8: {768: [8, 8, 12, 8], 1024: [4, 8, 8, 8, 4], 1280: [4, 8, 8, 8, 5], 1536: [4, 8, 8, 8, 6],
        1600: [5, 8, 8, 8, 5], 2304: [8, 8, 8, 4, 9], 4096: [16, 16, 8, 4, 4], 5120: [8, 8, 10, 8, 8],
        8192: [4, 16, 16, 16, 4]},
    16: {768: [8, 16, 12, 8], 1024: [4, 8, 16, 8, 4], 1280: [4, 8, 16, 8, 5], 1536: [4, 8, 16, 8, 6],
         1600: [5, 8, 16, 8, 5], 2304: [8, 8, 8, 8, 9], 4096: [4, 4, 8, 8, 8, 8], 5120: [8, 16, 10, 8, 8],
         8192: [4, 16, 16, 16, 8]},
    32: {768: [4, 8, 12, 8, 8], 2304: [8, 8, 16, 8, 9]},
    64: {768: [8, 8, 12, 8, 8], 1024: [4, 8, 8, 8, 8, 4], 1280: [4, 8, 8, 8, 8, 5], 1536: [4, 8, 8, 8, 8, 6],
         1600: [5, 8, 8, 8, 8, 5], 4096: [16, 16, 16, 4, 4, 4], 5120: [5, 8, 8, 16, 8, 8],
         8192: [4, 16, 16, 16, 8, 4]},
    128: {768: [8, 16, 12, 8, 8], 1024: [4, 8, 16, 8, 8, 4], 1280: [4, 8, 16, 8, 8, 5],
          1536: [4, 8, 16, 8, 8, 6], 1600: [5, 8, 16, 8, 8, 5], 4096: [16, 16, 16, 8, 4, 4],
          5120: [5, 8, 16, 16, 8, 8], 8192: [4, 16, 16, 16, 16, 4]},
}


def balanced_factors(n: int, parts: int) -> list[int]:
    """``n`` as a product of ``parts`` factors as equal as its prime factors allow (descending;
    1s fill up when ``n`` has fewer prime factors than ``parts``)."""
    if n < 1 or parts < 1:
        raise ValueError(f"cannot split {n} into {parts} factors")
    primes: list[int] = []
    rest, p = n, 2
    while p * p <= rest:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    if rest > 1:
        primes.append(rest)
    factors = [1] * parts
    for prime in sorted(primes, reverse=True):
        factors[factors.index(min(factors))] *= prime
    return sorted(factors, reverse=True)


def tt_shape(in_features: int, out_features: int) -> list[int]:
    """The modes of the tensor whose reshape is W (in, out): the official table's entry when there
    is one (reversed for a narrow input), else the fallback rule (see the module docstring)."""
    narrow, wide = min(in_features, out_features), max(in_features, out_features)
    modes = TT_SHAPES.get(narrow, {}).get(wide)
    if modes is not None:
        return list(modes) if in_features >= out_features else list(reversed(modes))
    cores = 2
    while MAX_MODE**cores < in_features * out_features:
        cores += 1
    return balanced_factors(in_features * out_features, cores)


class TensorTrainLinear(nn.Module):
    """y = x·W + b with W (in, out) the reshape of a tensor train of rank ``rank`` (module docstring).

    ``cores[k]``: (r_{k-1}, n_k, r_k); ``shape``: the modes (default `tt_shape`).
    """

    def __init__(
        self, in_features: int, out_features: int, rank: int, bias: bool = False, shape: list[int] | None = None
    ):
        super().__init__()
        if rank < 1:
            raise ValueError(f"TT rank must be >= 1, got {rank}")
        self.in_features, self.out_features = in_features, out_features
        self.shape = list(shape) if shape is not None else tt_shape(in_features, out_features)
        if math.prod(self.shape) != in_features * out_features:
            raise ValueError(f"modes {self.shape} do not multiply to {in_features}·{out_features}")
        d = len(self.shape)
        self.ranks = [1] + [rank] * (d - 1) + [1]
        self.cores = nn.ParameterList(
            nn.Parameter(torch.empty(self.ranks[k], self.shape[k], self.ranks[k + 1])) for k in range(d)
        )
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self._cache: tuple[tuple, torch.Tensor] | None = None  # (core versions, W) outside training
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Cores ~ N(0, 1)/√r_k · σ^{1/d} (entries of W then have std about σ = √(1/(in+out)));
        the bias ~ U(−1/√out, 1/√out)."""
        d = len(self.cores)
        core_scale = (1.0 / (self.in_features + self.out_features)) ** (0.5 / d)
        for core in self.cores:
            nn.init.normal_(core, std=core_scale / math.sqrt(core.shape[-1]))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.out_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def full(self) -> torch.Tensor:
        """The contracted weight W: (in, out)."""
        weight = self.cores[0]  # (1, n_1, r_1)
        for core in self.cores[1:]:  # (r, n, s)
            weight = torch.tensordot(weight, core, dims=([-1], [0]))  # (1, n_1, …, n_k, s)
        return weight.reshape(self.in_features, self.out_features)

    def weight(self) -> torch.Tensor:
        """W (in, out), reused from the last call while no core has changed and no gradient is
        being recorded for the cores (eval, decoding)."""
        if torch.is_grad_enabled() and any(core.requires_grad for core in self.cores):
            self._cache = None
            return self.full()
        key = tuple((core._version, core.data_ptr(), core.dtype, core.device) for core in self.cores)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self.full())
        return self._cache[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (…, in) → (…, out)."""
        return F.linear(x, self.weight().T, self.bias)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, modes={self.shape}, ranks={self.ranks}, bias={self.bias is not None}"
