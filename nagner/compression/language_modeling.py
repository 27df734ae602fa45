"""Batches, losses and the training loop shared by the generative-model compressors (SIMPLE pruning,
QuantGPT quantization): causal LMs learn ``text``, seq2seq models ``source → target``.

A batch is a dict the model's ``forward`` takes (``input_ids``, ``attention_mask``, ``labels`` with
-100 on padding); seq2seq models build their decoder inputs from ``labels``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from nagner.common.modes import evaluating

Batch = dict[str, torch.Tensor]


def is_seq2seq(model: nn.Module) -> bool:
    return bool(getattr(model.config, "is_encoder_decoder", False))


def make_batches(
    tokenizer, examples: Sequence[str] | Sequence[tuple[str, str]], *, batch_size: int = 16, max_length: int = 128
) -> list[Batch]:
    """Batches in order: strings are causal-LM texts, (source, target) pairs seq2seq examples."""
    batches = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        if isinstance(chunk[0], str):
            encoded = tokenizer(list(chunk), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
        else:
            sources, targets = zip(*chunk, strict=True)
            encoded = tokenizer(list(sources), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            target = tokenizer(list(targets), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            labels = target["input_ids"].masked_fill(target["attention_mask"] == 0, -100)
        batches.append({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels})
    return batches


def cycle(batches: Sequence[Batch], seed: int = 0) -> Iterator[Batch]:
    """The batches forever, reshuffled each pass under ``seed``."""
    order = list(range(len(batches)))
    rng = random.Random(seed)
    while True:
        rng.shuffle(order)
        for index in order:
            yield batches[index]


def predicted_positions(model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
    """The logits [N, vocab] of the positions that predict a real label token."""
    labels = batch["labels"]
    if is_seq2seq(model):
        return logits[labels != -100]
    return logits[:, :-1][labels[:, 1:] != -100]


def logit_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher ‖ student) per predicted token, at ``temperature`` (scaled by T², as usual).
    Both: [N, vocab]."""
    teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    student = F.log_softmax(student_logits / temperature, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2


@torch.no_grad()
def language_model_loss(model: nn.Module, batches: Sequence[Batch]) -> dict[str, float]:
    """Token-weighted mean cross-entropy and perplexity of ``model`` over ``batches``."""
    with evaluating(model):
        total, tokens = 0.0, 0
        for batch in batches:
            logits = model(**batch).logits
            labels = batch["labels"] if is_seq2seq(model) else batch["labels"][:, 1:]
            predicted = logits if is_seq2seq(model) else logits[:, :-1]
            mask = labels != -100
            total += float(F.cross_entropy(predicted[mask], labels[mask], reduction="sum"))
            tokens += int(mask.sum())
    loss = total / max(tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": tokens}


def train_steps(
    parameters: list[dict] | list[nn.Parameter],
    batches: Sequence[Batch],
    loss_of: Callable[[Batch], torch.Tensor],
    *,
    steps: int,
    learning_rate: float,
    seed: int = 0,
    after_step: Callable[[], None] | None = None,
    max_grad_norm: float = 1.0,
) -> list[float]:
    """AdamW over ``parameters`` for ``steps`` batches (linear decay), ``after_step`` after each
    update (e.g. a projection). Returns the loss of every step."""
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / max(steps, 1))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    losses = []
    stream = cycle(batches, seed)
    for _ in range(steps):
        loss = loss_of(next(stream))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        schedule.step()
        if after_step is not None:
            after_step()
        losses.append(float(loss.detach()))
    return losses


@contextmanager
def captured_outputs(model: nn.Module, names: Sequence[str]):
    """Inside the block, a dict filled with each named module's latest output tensor (the first
    element when a module returns a tuple)."""
    modules = dict(model.named_modules())
    outputs: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, inputs, output):
            outputs[name] = output[0] if isinstance(output, tuple) else output

        return hook

    handles = [modules[name].register_forward_hook(keep(name)) for name in names]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()
