"""`TTMatrix`: a linear map whose weight is stored in tensor-train (TT-matrix) form.

A weight W (out, in) with out = m_1···m_d and in = n_1···n_d is kept as d cores

    G_i: (r_{i-1}, m_i, n_i, r_i)        r_0 = r_d = 1, every inner TT rank r_i = ``rank``
    W[(i_1…i_d), (j_1…j_d)] = G_1[:, i_1, j_1, :] · G_2[:, i_2, j_2, :] ··· G_d[:, i_d, j_d, :]

(row index i_1 most significant, as in a row-major reshape). Parameters: Σ_i r_{i-1}·k_i·r_i with
k_i = m_i·n_i (plus ``out`` for the bias): for 768×768 at rank 5, 2,640 instead of 589,824.

Factor rule (`tt_factors`): d is the fewest cores, at least 2, with 16^d ≥ max(in, out), so mode
sizes stay around 16 or below (768 → 3 cores, 4096 → 3, 64 → 2); each of in and out is split into d
balanced factors (`balanced_factors`: prime factors, largest first, each to the currently smallest
part; sorted descending): 768 → [12, 8, 8], 64 → [8, 8], 8 → [4, 2], 5 → [5, 1]. A dimension with a
large prime factor keeps it as one mode (no padding).

Init (LoRETTA's): core i ~ N(0, 1)/√r_i · σ^{1/d} with σ = √(1/(in + out)), so every entry of the
contracted W has variance σ² (a Glorot-like scale); the bias starts at 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_MODE = 16  # the largest mode size the core count aims for


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


def tt_factors(in_features: int, out_features: int) -> tuple[list[int], list[int]]:
    """(in factors, out factors), d of each: the fewest cores d ≥ 2 with 16^d ≥ max(in, out)."""
    cores = 2
    while MAX_MODE**cores < max(in_features, out_features):
        cores += 1
    return balanced_factors(in_features, cores), balanced_factors(out_features, cores)


class TTMatrix(nn.Module):
    """y = x·Wᵀ + b with W (out, in) a TT-matrix of rank ``rank`` (see the module docstring).

    ``cores[i]``: (r_{i-1}, m_i, n_i, r_i); parameter count Σ_i r_{i-1}·m_i·n_i·r_i (+ out with bias).
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = False):
        super().__init__()
        if rank < 1:
            raise ValueError(f"TT rank must be >= 1, got {rank}")
        self.in_features, self.out_features = in_features, out_features
        self.in_factors, self.out_factors = tt_factors(in_features, out_features)
        d = len(self.in_factors)
        self.ranks = [1] + [rank] * (d - 1) + [1]
        self.cores = nn.ParameterList(
            nn.Parameter(
                torch.empty(self.ranks[i], self.out_factors[i], self.in_factors[i], self.ranks[i + 1])
            )
            for i in range(d)
        )
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Cores ~ N(0, 1)/√r_i · σ^{1/d} (entries of W then have std σ = √(1/(in+out))); bias 0."""
        d = len(self.cores)
        core_scale = (1.0 / (self.in_features + self.out_features)) ** (0.5 / d)
        for core in self.cores:
            nn.init.normal_(core, std=core_scale / math.sqrt(core.shape[-1]))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def full(self) -> torch.Tensor:
        """The contracted weight W: (out, in)."""
        first = self.cores[0]
        weight = first.reshape(first.shape[1], first.shape[2], first.shape[3])  # (M, N, r); r_0 = 1 dropped
        for core in self.cores[1:]:  # (r, m, n, s)
            rows, cols = weight.shape[0] * core.shape[1], weight.shape[1] * core.shape[2]
            weight = torch.einsum("abr,rcds->acbds", weight, core).reshape(rows, cols, core.shape[3])
        return weight.squeeze(-1)  # (out, in); r_d = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (…, in) → (…, out), through the contracted W (one contraction per call, then a GEMM:
        cheaper than `matvec` unless there are only a few rows)."""
        return F.linear(x, self.full(), self.bias)

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """The same map core by core, never forming W: x (…, in) → (…, out)."""
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.in_features).shape[0]
        # state: (P, r_{i-1}, n_i, Q), P = rows·m_1···m_{i-1} (output modes so far), Q = n_{i+1}···n_d
        state = x.reshape(rows, 1, self.in_features)
        for i, core in enumerate(self.cores):  # core (r, m, n, s)
            n = self.in_factors[i]
            state = state.reshape(state.shape[0], core.shape[0], n, -1)
            state = torch.einsum("prnq,rmns->pmsq", state, core)  # (P, m, s, Q)
            state = state.reshape(state.shape[0] * state.shape[1], core.shape[3], -1)
        out = state.reshape(*lead, self.out_features)
        return out + self.bias if self.bias is not None else out

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features} {self.in_factors}, out={self.out_features} {self.out_factors}, "
            f"ranks={self.ranks}, bias={self.bias is not None}"
        )
