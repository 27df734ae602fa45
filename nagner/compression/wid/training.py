"""Training a compacted model with the transformers `Trainer`: the official optimizer groups, and
the callback that squeezes before every optimizer step and grows the masks after it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from nagner.compression.wid.plan import WidPlan
from nagner.compression.wid.schedule import squeeze_gradients, update_masks


def wid_param_groups(
    model: nn.Module, plan: WidPlan, compactor_lr: float = 5e-5, base_lr: float = 1e-6, weight_decay: float = 0.01
) -> list[dict[str, Any]]:
    """The official groups: the compactors at ``compactor_lr`` with weight decay, every other
    trainable parameter (the teacher's weights, a task head) at ``base_lr``, so the teacher's
    weights are inherited almost unchanged."""
    compactors = {id(p) for p in plan.compactor_parameters()}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in compactors]
    return [
        {"params": plan.compactor_parameters(), "lr": compactor_lr, "weight_decay": weight_decay},
        {"params": rest, "lr": base_lr, "weight_decay": 0.0},
    ]


class WidCallback(TrainerCallback):
    """Runs WID's schedule in a `Trainer`: `squeeze_gradients` before each optimizer step and
    `update_masks` after it. ``history`` records (step, hidden dimensions kept) at each mask change."""

    def __init__(self, plan: WidPlan):
        self.plan = plan
        self.history: list[tuple[int, int]] = []

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        squeeze_gradients(self.plan, kwargs.get("optimizer"))

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if update_masks(self.plan, state.global_step):
            self.history.append((state.global_step, int(self.plan.masks.keep("hidden").sum())))


def squeezed_fraction(plan: WidPlan) -> float:
    """The largest |entry| of the masked rows / columns of every compactor, relative to the largest
    of the kept ones (0 once squeezing is complete)."""
    masked, kept = [], []
    for linear in plan.linears.values():
        rows = plan.masks.keep(linear.in_mask)
        masked.append(linear.row.detach()[~rows].abs().amax() if (~rows).any() else torch.zeros(()))
        kept.append(linear.row.detach()[rows].abs().amax())
    return float(torch.stack(masked).max() / torch.stack(kept).max())
