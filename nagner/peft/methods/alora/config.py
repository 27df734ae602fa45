"""ALoRA's config: the LoRA fields; its allocation rounds are the training procedure it declares."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from nagner.peft.config import register_method
from nagner.peft.layer import AdaptedLayer
from nagner.peft.methods.alora.adapter import AloraAdapter
from nagner.peft.methods.lora import LoraConfig

logger = logging.getLogger(__name__)


@register_method
@dataclass
class AloraConfig(LoraConfig):
    """ALoRA: the LoRA fields; ``r`` is the initial rank of every module (r₀, also the scaling's
    denominator) and ``rank_pattern`` holds the per-module ranks after allocation rounds."""

    method = "alora"
    peft_type = "ALORA"
    peft_native = False

    def build_adapter(self, layer: AdaptedLayer, module_name: str) -> AloraAdapter:
        r, alpha = self.rank_and_alpha(module_name)
        return AloraAdapter(layer.in_features, layer.out_features, r, alpha, self)

    def training_callbacks(self, context: Any, name: str) -> list[Any]:
        """Allocation rounds as in the paper (after one epoch, then every quarter epoch, at most 8),
        scored on ``context.validation_batch``; none, with a warning, when training is shorter than
        one epoch or there is no validation batch (the adapter then stays plain LoRA)."""
        from nagner.peft.methods.alora.allocation import AloraCallback, paper_allocation_steps
        from nagner.peft.procedures import per_example_loss

        at_steps = paper_allocation_steps(context.steps_per_epoch, context.total_steps)
        if not at_steps or context.validation_batch is None:
            reason = "training is too short (the first round comes after one epoch)" if not at_steps else (
                "there is no validation batch to score ranks on"
            )
            logger.warning("ALoRA: no allocation round: %s; the adapter stays plain LoRA", reason)
            return []
        callback = AloraCallback(
            context.validation_batch,
            context.loss_fn or per_example_loss,
            name=name,
            adapted_module=context.adapted_module,
            at_steps=at_steps,
            masks_per_forward=context.max_batch_copies,
        )
        return [callback]
