"""Training-time procedures that an adapter method needs besides its loss, chosen by the method.

A training recipe describes its run once (`TrainingContext`) and adds what `training_callbacks`
returns to its `Trainer`; it never names a method. Each config class says what it needs through
`AdapterConfig.training_callbacks`: SoRA the proximal step on its gates after every optimizer step,
ALoRA its allocation rounds; the other methods nothing. Loss terms (SoRA's L1 term, MiLoRA's load
balancing) are not procedures: `AdapterTrainer` adds them, once per optimizer step.

    context = TrainingContext(steps_per_epoch=100, total_steps=300, validation_batch=batch)
    trainer = AdapterTrainer(model=model, args=args, ...,
                             callbacks=training_callbacks(model, context))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nagner.peft.attach import DEFAULT_NAME, adapter_config

LossFn = Callable[[nn.Module, Mapping[str, Any]], torch.Tensor]


@dataclass
class TrainingContext:
    """What a method's procedures may need to know about the training run.

    Args:
        steps_per_epoch: optimizer steps in one epoch.
        total_steps: optimizer steps of the whole run.
        validation_batch: a held-out batch (tensors, with ``labels`` or whatever ``loss_fn`` reads)
            for procedures that score the adapter (ALoRA's rank importance); None when there is none.
        loss_fn: ``loss_fn(adapted_module, batch)`` → per-example losses (n,), computed with the
            model in eval mode; None: `per_example_loss`, the loss of a plain transformers model.
        adapted_module: the module the adapter is attached to when that is not the Trainer's model
            itself (e.g. the encoder inside a task model; ``loss_fn`` then runs the task head itself).
        max_batch_copies: how many copies of ``validation_batch`` one forward pass may hold
            (procedures that score several settings at once; lower it for models with large outputs).
    """

    steps_per_epoch: int
    total_steps: int
    validation_batch: Mapping[str, Any] | None = None
    loss_fn: LossFn | None = None
    adapted_module: nn.Module | None = None
    max_batch_copies: int = 32


def per_example_loss(model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
    """Per-example loss (n,) of a `transformers` model on ``batch`` (with ``labels``): cross
    entropy for classification (logits (n, C)), its mean over each example's labelled tokens for
    token classification (logits (n, t, C), label −100 ignored), squared error for regression
    (one output, float labels). Causal LMs (shifted labels) need their own ``loss_fn``."""
    labels = batch["labels"]
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    if labels.is_floating_point():
        return (logits.reshape(labels.shape) - labels).pow(2).reshape(labels.shape[0], -1).mean(1)
    if logits.dim() == 2:
        return F.cross_entropy(logits, labels, reduction="none")  # (n,)
    losses = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="none")  # (n·t,)
    losses = losses.view(labels.shape)  # (n, t)
    counted = (labels != -100).sum(-1).clamp_min(1)
    return losses.sum(-1) / counted


def training_callbacks(model: nn.Module, context: TrainingContext, name: str = DEFAULT_NAME) -> list[Any]:
    """The `transformers.TrainerCallback`s that adapter ``name`` needs during training (empty for
    methods without a procedure). ``model`` is the Trainer's model; the adapter is looked up on
    ``context.adapted_module`` when given."""
    adapted = context.adapted_module if context.adapted_module is not None else model
    return adapter_config(adapted, name).training_callbacks(dataclasses.replace(context, adapted_module=adapted), name)
