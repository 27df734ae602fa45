"""Bi-level training of a prompt-conditioned adapter (MiLoRA's DARTS-style alternation): the
routers' rational activation coefficients Θ learn on held-out data while the Trainer trains every
other adapter parameter Ω on the training data.

After each optimizer step of the Trainer, `BilevelCallback` takes one Adam step on Θ against the
loss of the validation batch (model in eval mode, so dropout does not blur it); the Trainer's own
optimizer never sees Θ (it is frozen for it when the callback is made). Use it through
`nagner.peft.training_callbacks` with a `TrainingContext` that has a validation batch; in a custom
loop, call `BilevelCallback.step()` after each optimizer step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from nagner.peft.attach import DEFAULT_NAME
from nagner.peft.procedures import LossFn
from nagner.peft.prompt import bilevel_parameters


class BilevelCallback(TrainerCallback):
    """One Adam step on adapter ``name``'s Θ (`bilevel_parameters`) per optimizer step of the
    Trainer, on ``loss_fn(adapted_module, batch).mean()`` (per-example losses of the validation
    ``batch``). ``adapted_module``: the module the adapter is attached to (the Trainer's model, or
    e.g. the encoder inside a task model). ``history`` gets each step's validation loss."""

    def __init__(
        self,
        adapted_module: nn.Module,
        batch: Mapping[str, Any],
        loss_fn: LossFn,
        learning_rate: float,
        name: str = DEFAULT_NAME,
    ):
        self.adapted_module = adapted_module
        self.batch = batch
        self.loss_fn = loss_fn
        _, self.theta = bilevel_parameters(self.adapted_module, name)
        for parameter in self.theta:
            parameter.requires_grad_(False)  # not the Trainer's: this callback steps them
        self.optimizer = torch.optim.Adam(self.theta, lr=learning_rate)
        self.history: list[float] = []

    def step(self) -> float:
        """One step on Θ now; returns the validation loss before it."""
        module = self.adapted_module
        device = next(module.parameters()).device
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in self.batch.items()}
        training = module.training
        module.eval()
        for parameter in self.theta:
            parameter.requires_grad_(True)
        try:
            loss = self.loss_fn(module, batch).mean()
            gradients = torch.autograd.grad(loss, self.theta, allow_unused=True)
        finally:
            for parameter in self.theta:
                parameter.requires_grad_(False)
            module.train(training)
        for parameter, gradient in zip(self.theta, gradients, strict=True):
            parameter.grad = gradient
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.history.append(float(loss))
        return self.history[-1]

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.step()
