"""The SoRA layer (LoRA with a gate vector between A and B) and its model-level L1 term."""

from __future__ import annotations

import torch
from torch import nn

from nagner.peft.adapter import AdapterExtras
from nagner.peft.attach import adapted_layers
from nagner.peft.methods.lora import LoraAdapter, LoraConfig


class SoraAdapter(LoraAdapter):
    """LoRA plus the gate ``lora_gate`` (r,) applied to A·x."""

    def __init__(self, d_in: int, d_out: int, r: int, alpha: float, config: LoraConfig):  # a `SoraConfig`
        super().__init__(d_in, d_out, r, alpha, config)
        self.l1_weight = config.l1_weight
        self.lora_gate = nn.Parameter(torch.randn(r))  # (r,)

    def mix_ranks(self, h: torch.Tensor) -> torch.Tensor:
        """h (…, r) → g ⊙ h."""
        return h * self.lora_gate

    def rank_matrix(self) -> torch.Tensor:
        """diag(g) (r, r)."""
        return torch.diag(self.lora_gate)

    def kept_ranks(self) -> torch.Tensor:
        """Indices of the non-zero gates (r',)."""
        return self.lora_gate.detach().nonzero().squeeze(1)

    def as_lora(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A (r', d_in), B (d_out, r')) over the r' non-zero gates: g and the scaling folded into B."""
        keep = self.kept_ranks()
        B = self.weight_B()[:, keep] * self.lora_gate[keep] * self.scaling
        return self.weight_A()[keep], B


class SoraPenalty(AdapterExtras):
    """SoRA's L1 term over the whole model, as the official trainer computes it: η·Σ|g| over every
    gate of the adapter, divided by the number of gate entries (after pruning, of those left)."""

    changes_outputs = False  # a loss term only

    def __init__(self, l1_weight: float):
        super().__init__()
        self.l1_weight = l1_weight
        self._target: tuple[nn.Module, str] | None = None  # (the model, the adapter's name)

    def install(self, model: nn.Module, name: str) -> list:
        # A plain attribute, not a submodule: no module cycle, no state-dict copy, and a deep copy
        # of the model points the copied penalty at the copied model.
        object.__setattr__(self, "_target", (model, name))
        return []

    def auxiliary_loss(self) -> torch.Tensor | None:
        """η·Σ|g| / #g over the adapter's gates; None when η = 0 or no gate is left."""
        model = self._target[0] if self._target is not None else None
        if self.l1_weight == 0 or model is None:
            return None
        name = self._target[1]
        gates = [
            layer.adapters[name].lora_gate for layer in adapted_layers(model).values()
            if isinstance(layer.adapters[name] if name in layer.adapters else None, SoraAdapter)
        ]
        gates = [gate.reshape(-1) for gate in gates if gate.numel()]  # (r_m,) each
        if not gates:
            return None
        every = torch.cat(gates)  # (Σ r_m,)
        return self.l1_weight * every.abs().sum() / every.numel()
