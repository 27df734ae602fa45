"""LoRA (Hu et al. 2021) and the adapter layout the LoRA family shares.

    y = W0·x + b + s · B·R·A·dropout(x)        A: (r, d_in), B: (d_out, r), s = α/r (α/√r with rsLoRA)

R is the variant's r×r rank map: identity for LoRA, a learned mixer for MoSLoRA, diag(gate) for
SoRA, a 0/1 rank mask for ALoRA. Variants override `mix_ranks` (applied to the (…, r) activations)
and `rank_matrix` (the same map as a matrix, for merging and export); LoRETTA_rep overrides
`weight_A` / `weight_B`. Init (as `peft`): A Kaiming-uniform(a=√5), B = 0, so attaching is a no-op.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from nagner.peft.adapter import Adapter, add_to_output
from nagner.peft.config import AdapterConfig, dict_field, register_method
from nagner.peft.layer import AdaptedLayer

V = TypeVar("V")


def pattern_value(patterns: dict[str, float], module_name: str, default: float) -> float:
    """The value of the first ``patterns`` key (a regex matching a dotted suffix of
    ``module_name``, as `peft`'s rank_pattern) that matches; ``default`` otherwise."""
    for key, value in patterns.items():
        if re.fullmatch(rf"(?:.*\.)?(?:{key})", module_name):
            return value
    return default


@register_method
@dataclass
class LoraConfig(AdapterConfig):
    """LoRA. Field names follow `peft`'s LoraConfig, so `peft` reads the saved file as is.

    Args:
        r: rank. lora_alpha: α (scaling α/r). lora_dropout: dropout on the adapter's input.
        use_rslora: scale by α/√r instead. init_lora_weights: True (Kaiming A, zero B),
            "gaussian" (A ~ N(0, 1/r), zero B) or False (A and B both Kaiming, as `nn.Linear`
            starts: not a no-op at first; `peft` writes it routinely, and a loaded folder's
            weights replace the init anyway). Inits that rewrite the base weights (PiSSA, LoftQ,
            CorDA, ...) are refused. rank_pattern / alpha_pattern: per-module r / α
            (keys: regexes matched against a dotted suffix of the module name).
    """

    method = "lora"
    peft_type = "LORA"
    peft_native = True
    r: int = 8
    lora_alpha: float = 8
    lora_dropout: float = 0.0
    use_rslora: bool = False
    bias: str = "none"
    init_lora_weights: bool | str = True
    rank_pattern: dict[str, int] = dict_field()
    alpha_pattern: dict[str, float] = dict_field()

    def __post_init__(self) -> None:
        if self.r < 0:
            raise ValueError(f"r must be >= 0, got {self.r}")
        if self.bias != "none":
            raise ValueError("only bias='none' is supported (adapters never train the host's bias)")
        if self.init_lora_weights not in (True, False, "gaussian"):
            raise ValueError(f"init_lora_weights must be True, False or 'gaussian', got {self.init_lora_weights!r}")

    def rank_and_alpha(self, module_name: str) -> tuple[int, float]:
        return (
            int(pattern_value(self.rank_pattern, module_name, self.r)),
            float(pattern_value(self.alpha_pattern, module_name, self.lora_alpha)),
        )

    def build_adapter(self, layer: AdaptedLayer, module_name: str) -> LoraAdapter:
        r, alpha = self.rank_and_alpha(module_name)
        return LoraAdapter(layer.in_features, layer.out_features, r, alpha, self)


class LoraAdapter(Adapter):
    """The LoRA pair (``lora_A``, ``lora_B``: `nn.Linear` without bias, as in `peft`, so state-dict
    keys read ``….lora_A.weight``) and the hooks LoRA variants override."""

    mergeable = True
    lora_family = True

    def __init__(self, d_in: int, d_out: int, r: int, alpha: float, config: LoraConfig):
        super().__init__()
        self.r = r
        self.alpha = alpha
        self.scaling = alpha / math.sqrt(r) if config.use_rslora else (alpha / r if r else 0.0)
        self.lora_dropout = nn.Dropout(config.lora_dropout) if config.lora_dropout > 0 else nn.Identity()
        self.lora_A = nn.Linear(d_in, r, bias=False)
        self.lora_B = nn.Linear(r, d_out, bias=False)
        self.init_weights = config.init_lora_weights
        self.reset_lora_parameters()

    @torch.no_grad()
    def reset_lora_parameters(self) -> None:
        if self.init_weights == "gaussian":
            nn.init.normal_(self.lora_A.weight, std=1 / max(self.r, 1))
        else:
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        if self.init_weights is False:
            nn.init.kaiming_uniform_(self.lora_B.weight, a=math.sqrt(5))
        else:
            nn.init.zeros_(self.lora_B.weight)

    # ------------------------------------------------------------------------ variant hooks
    def weight_A(self) -> torch.Tensor:
        """A: (r, d_in)."""
        return self.lora_A.weight

    def weight_B(self) -> torch.Tensor:
        """B: (d_out, r)."""
        return self.lora_B.weight

    def mix_ranks(self, h: torch.Tensor) -> torch.Tensor:
        """The rank map R applied to A·x: h (…, r) → (…, r). Identity for LoRA."""
        return h

    def rank_matrix(self) -> torch.Tensor | None:
        """R as an (r, r) matrix (acting on A·x), or None for the identity."""
        return None

    # ----------------------------------------------------------------------------- adapter API
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        A, B = self.weight_A(), self.weight_B()
        h = self.mix_ranks(F.linear(self.lora_dropout(x.to(A.dtype)), A))  # (…, r)
        if y.dtype != B.dtype:  # a half-precision host with a float32 adapter
            return torch.add(y, F.linear(h, B).to(y.dtype), alpha=self.scaling)
        y2 = y.reshape(-1, y.shape[-1])  # (n, d_out)
        h2 = h.reshape(y2.shape[0], h.shape[-1])  # (n, r); r may be 0 (an ALoRA module whose ranks left)
        return add_to_output(y2, h2, B.T, self.scaling).view(y.shape)  # y + s·B·h in one kernel

    def as_lora(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A (r, d_in), B (d_out, r)), rank map folded into A and scaling into B."""
        A, R = self.weight_A(), self.rank_matrix()
        if R is not None:
            A = R @ A
        return A, self.weight_B() * self.scaling

    def delta_weight(self) -> torch.Tensor:
        A, B = self.as_lora()
        return B @ A  # (d_out, d_in)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, scaling={self.scaling:g}"


def module_pattern(values: dict[str, V]) -> dict[str, V]:
    """A ``rank_pattern`` / ``alpha_pattern`` naming each module exactly: escaped full names,
    longest first (a pattern also matches longer names ending in it, and the first match wins)."""
    return {re.escape(name): values[name] for name in sorted(values, key=lambda n: (-len(n), n))}
