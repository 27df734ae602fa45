"""`AdapterTrainer`: the HF `Trainer` plus the adapters' auxiliary losses.

Training-time procedures that act between steps (SoRA's proximal step, ALoRA's allocation rounds)
are `TrainerCallback`s in their method modules; a loss term (MiLoRA's load balancing, SoRA's L1
term) has to enter the loss itself, which is what this subclass adds. In a custom loop, add
``nagner.peft.auxiliary_loss(model)`` to the loss instead.
"""

from __future__ import annotations

from typing import Any

from transformers import Trainer

from nagner.peft.attach import auxiliary_loss


class AdapterTrainer(Trainer):
    """`Trainer` whose loss is the model's loss plus `auxiliary_loss(model)`."""

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, **kwargs)
        extra = auxiliary_loss(getattr(model, "module", model))
        if extra is not None:
            loss = loss + extra
        return (loss, outputs) if return_outputs else loss
