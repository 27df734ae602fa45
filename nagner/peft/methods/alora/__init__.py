"""ALoRA (Liu et al., NAACL 2024, *Allocating* LoRA): LoRA whose ranks are re-allocated between
modules during training. `config`: the method; `adapter`: the gated LoRA layer; `allocation`: the
rank importance and the allocation rounds (its `AloraCallback` stands on transformers' Trainer and
loads on first use)."""

from nagner.peft.methods.alora.adapter import AloraAdapter, ablated_ranks, alora_adapters
from nagner.peft.methods.alora.config import AloraConfig

__all__ = ["AloraAdapter", "AloraConfig", "ablated_ranks", "alora_adapters"]
