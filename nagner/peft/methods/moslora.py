"""MoSLoRA (Wu et al., EMNLP 2024): LoRA with a learnable r×r subspace mixer M between A and B.

    y = W0·x + b + s · B·M·A·dropout(x)        A: (r, d_in), M: (r, r), B: (d_out, r), s = α/r

Plain LoRA is the case M = I; MoSLoRA learns M. Init (as the official code): A and M
Kaiming-uniform(a=√5) ("kaiming", the default) or M orthogonal ("orthogonal"), B = 0, so attaching
is a no-op. "identity" gives LoRA at step 0 (the paper's ablation: about LoRA's score). A zero
mixer is refused: with B = 0 and M = 0 every gradient of A, B and M is zero, so it never trains.

Mergeable: ΔW = s·B·M·A; `as_lora` folds M into A (A' = M·A), so it exports to a plain LoRA.
Extra parameters: r² per module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nagner.peft.config import register_method
from nagner.peft.layer import AdaptedLayer
from nagner.peft.methods.lora import LoraAdapter, LoraConfig

MIXER_INITS = ("kaiming", "orthogonal", "identity")


@register_method
@dataclass
class MosLoraConfig(LoraConfig):
    """MoSLoRA: the LoRA fields plus ``mixer_init`` ("kaiming", "orthogonal" or "identity")."""

    method = "moslora"
    peft_type = "MOSLORA"
    peft_native = False
    mixer_init: str = "kaiming"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mixer_init in ("zero", "zeros"):
            raise ValueError(
                "mixer_init='zeros' never trains: with B = 0 and a zero mixer the gradients of A, B and "
                f"the mixer are all zero; use one of {', '.join(MIXER_INITS)}"
            )
        if self.mixer_init not in MIXER_INITS:
            raise ValueError(f"mixer_init must be one of {', '.join(MIXER_INITS)}, got {self.mixer_init!r}")

    def build_adapter(self, layer: AdaptedLayer, module_name: str) -> MosLoraAdapter:
        r, alpha = self.rank_and_alpha(module_name)
        return MosLoraAdapter(layer.in_features, layer.out_features, r, alpha, self)


class MosLoraAdapter(LoraAdapter):
    """LoRA plus ``lora_mixer`` (`nn.Linear(r, r)` without bias: its weight M acts on A·x)."""

    def __init__(self, d_in: int, d_out: int, r: int, alpha: float, config: MosLoraConfig):
        super().__init__(d_in, d_out, r, alpha, config)
        self.mixer_init = config.mixer_init
        self.lora_mixer = nn.Linear(r, r, bias=False)
        self.reset_mixer()

    @torch.no_grad()
    def reset_mixer(self) -> None:
        """Initialise M as ``mixer_init`` says."""
        weight = self.lora_mixer.weight  # (r, r)
        if self.mixer_init == "orthogonal":
            nn.init.orthogonal_(weight)
        elif self.mixer_init == "identity":
            weight.copy_(torch.eye(self.r, dtype=weight.dtype))
        else:
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))

    def mix_ranks(self, h: torch.Tensor) -> torch.Tensor:
        """h (…, r) → M·h (…, r)."""
        return F.linear(h, self.lora_mixer.weight)

    def rank_matrix(self) -> torch.Tensor:
        """M (r, r)."""
        return self.lora_mixer.weight
