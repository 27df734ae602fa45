"""SoRA's config: the LoRA fields plus the L1 weight and the proximal threshold; its proximal step
after every optimizer step is the training procedure it declares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from nagner.peft.config import register_method
from nagner.peft.layer import AdaptedLayer
from nagner.peft.methods.lora import LoraConfig
from nagner.peft.methods.sora.adapter import SoraAdapter, SoraPenalty


@register_method
@dataclass
class SoraConfig(LoraConfig):
    """SoRA: the LoRA fields (defaults r = 16, α = 16 as the official `run_glue.py`) plus

    Args:
        l1_weight: η, weight of the loss term ``η·Σ|g| / #g`` over every gate entry of the model
            (official ``sparse_lambda``, normalised as the official trainer does).
        prox_threshold: ξ, the proximal step's threshold (official ``sparse_lambda_2``); a
            `SparsitySchedule` in `SoraCallback` overrides it.
        official_prox: apply the official code's sequential threshold instead of the exact one.
    """

    method = "sora"
    peft_type = "SORA"
    peft_native = False
    r: int = 16
    lora_alpha: float = 16
    l1_weight: float = 1e-3
    prox_threshold: float = 1e-3
    official_prox: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.l1_weight < 0 or self.prox_threshold < 0:
            raise ValueError("l1_weight and prox_threshold must be >= 0")

    def build_adapter(self, layer: AdaptedLayer, module_name: str) -> SoraAdapter:
        r, alpha = self.rank_and_alpha(module_name)
        return SoraAdapter(layer.in_features, layer.out_features, r, alpha, self)

    def build_extras(self, model: nn.Module, layers: dict[str, AdaptedLayer]) -> SoraPenalty:
        return SoraPenalty(self.l1_weight)

    def training_callbacks(self, context: Any, name: str) -> list[Any]:
        """The proximal step on the gates after every optimizer step (`SoraCallback`)."""
        from nagner.peft.methods.sora.schedule import SoraCallback  # stands on transformers' Trainer

        return [SoraCallback(name, adapted_module=context.adapted_module)]
