"""What an adapter is to its host layer, and the model-level parts some methods add.

An `Adapter` sits beside one host module (a linear layer) inside an `AdaptedLayer` and turns the
host's output ``y = W0 x + b`` into the adapted output: ``y + ΔW x`` for the LoRA family,
``y + s·Up(act(Down(y)))`` for a bottleneck adapter, ``y ⊙ v`` for prompt-generated scalings.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


class Adapter(nn.Module):
    """One named adapter on one host module.

    Subclasses set ``mergeable`` (the change is a weight delta that can be added to W0) and
    ``lora_family`` (the delta is ``B·A`` with a plain low-rank pair, see `as_lora`: such adapters
    export to `peft` LoRA and run in batched mixed-adapter inference).
    """

    mergeable: bool = False
    lora_family: bool = False

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: the host's input (..., d_in); y: its output so far (..., d_out) → adapted output."""
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        """ΔW (d_out, d_in) with the scaling included; only for mergeable adapters."""
        raise TypeError(f"{type(self).__name__} is not mergeable")

    def as_lora(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A (r, d_in), B (d_out, r)) with B·A == delta_weight(); only for the LoRA family."""
        raise TypeError(f"{type(self).__name__} is not a LoRA-family adapter")

    def auxiliary_loss(self) -> torch.Tensor | None:
        """A term to add to the training loss (e.g. SoRA's L1 on gates); None for most methods."""
        return None


class AdapterExtras(nn.Module):
    """Model-level parts of one named adapter (routers, vector generators), with their hooks.

    ``install`` registers whatever hooks the method needs on the model and returns their handles;
    they are removed when the adapter is detached.
    """

    # Whether these parts take part in the forward pass (routers, generators). Parts that only add a
    # training-loss term (SoRA's L1 penalty) leave the adapter a plain LoRA at inference.
    changes_outputs: bool = True

    def install(self, model: nn.Module, name: str) -> list[RemovableHandle]:
        return []

    def auxiliary_loss(self) -> torch.Tensor | None:
        """A term to add to the training loss, from the last forward pass (e.g. MiLoRA's
        load-balancing loss); None when there is none."""
        return None


def add_to_output(y: torch.Tensor, h: torch.Tensor, B: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """y + alpha·h·B for matrices (addmm) or batches of them (baddbmm), accumulated by the GEMM
    itself, no separate product and add. In place under no_grad, where y is the host layer's fresh
    output (inference); out of place when gradients are recorded."""
    if y.dim() == 2:
        return torch.addmm(y, h, B, alpha=alpha) if torch.is_grad_enabled() else y.addmm_(h, B, alpha=alpha)
    return torch.baddbmm(y, h, B, alpha=alpha) if torch.is_grad_enabled() else y.baddbmm_(h, B, alpha=alpha)
