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
    """`Trainer` whose loss is the model's loss plus `auxiliary_loss(model)`, counted once per
    optimizer step: under gradient accumulation each micro-batch carries its share of it."""

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, **kwargs)
        extra = auxiliary_loss(getattr(model, "module", model))
        if extra is not None:
            if model.training and self._loss_scaled_for_accumulation(kwargs.get("num_items_in_batch")):
                # transformers will not divide this loss by the accumulation steps (the task loss is
                # already normalised over the whole accumulated batch), so the parameter-only term
                # must be divided here or it would count once per micro-batch.
                extra = extra / getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
            loss = loss + extra
        return (loss, outputs) if return_outputs else loss

    def _loss_scaled_for_accumulation(self, num_items_in_batch: Any) -> bool:
        """Whether `Trainer.training_step` skips its division by the accumulation steps (its own rule)."""
        scaled = getattr(self, "loss_is_scaled_for_ga", None)
        if scaled is not None:
            return bool(scaled)
        return bool(
            (getattr(self, "model_accepts_loss_kwargs", False) and num_items_in_batch is not None)
            or getattr(self, "compute_loss_func", None) is not None
        )
