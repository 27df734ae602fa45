"""Quantization-aware training of a generative model (QuantGPT, Tao et al., ACL 2022), and the
baselines in the same frame.

- ``quantgpt``: module-wise dynamic scaling (`ModuleScaledQuantizer`), trained with logit
  distillation from the full-precision teacher plus ``contrastive_weight`` × token-level contrastive
  distillation (`contrastive.py`);
- ``pact``: PACT-style learned clips, trained with logit distillation only;
- ``minmax``: min–max post-training quantization (no training).

Weights train through the straight-through estimator; the clips (γ or α) at their own learning rate.
Activations are 8-bit (dynamic min–max) in every method. λ (0.1), τ (0.1), the bank size and the
learning rates are ours (the paper does not publish them).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nagner.compression.language_modeling import (
    Batch,
    is_seq2seq,
    logit_distillation,
    predicted_positions,
    train_steps,
)
from nagner.compression.quantgpt.contrastive import TeacherMemoryBank, token_contrastive_loss
from nagner.compression.quantgpt.modules import (
    quantize_model,
    quantizer_parameters,
    storage_report,
    weight_parameters,
)


@dataclass
class QuantOptions:
    method: str = "quantgpt"  # quantgpt | pact | minmax
    bits: int = 4
    activation_bits: int | None = 8
    embeddings: bool = True
    granularity: str = "tensor"  # one clip per weight tensor (QuantGPT's module-wise), or "channel"
    steps: int = 300
    learning_rate: float = 5e-5  # weights
    clip_learning_rate: float = 1e-3  # γ or α
    contrastive_weight: float = 0.1  # λ (quantgpt only)
    temperature: float = 0.1  # τ
    bank_size: int = 4096
    seed: int = 0


def last_hidden(model: nn.Module, output) -> torch.Tensor:
    """The last decoder layer's hidden states [B, T, D] of a forward run with output_hidden_states."""
    return (output.decoder_hidden_states if is_seq2seq(model) else output.hidden_states)[-1]


def quantize_with_qat(teacher: nn.Module, batches: Sequence[Batch], options: QuantOptions) -> tuple[nn.Module, dict]:
    """A fake-quantized copy of ``teacher`` (quantized wrappers in place; `fold_quantized` makes it a
    plain model), trained per ``options``; and a report (storage bits, losses)."""
    torch.manual_seed(options.seed)
    teacher.eval()
    student = quantize_model(
        copy.deepcopy(teacher),
        options.method,
        options.bits,
        activation_bits=options.activation_bits,
        embeddings=options.embeddings,
        granularity=options.granularity,
    )
    losses: list[float] = []
    if options.method != "minmax" and options.steps > 0:
        contrast = options.method == "quantgpt" and options.contrastive_weight > 0
        bank = TeacherMemoryBank(options.bank_size)
        student.train()

        def loss_of(batch: Batch) -> torch.Tensor:
            with torch.no_grad():
                teacher_out = teacher(**batch, output_hidden_states=contrast)
            student_out = student(**batch, output_hidden_states=contrast)
            loss = logit_distillation(
                predicted_positions(student, batch, student_out.logits),
                predicted_positions(teacher, batch, teacher_out.logits),
            )
            if contrast:
                s = predicted_positions(student, batch, last_hidden(student, student_out))  # [N, D]
                t = predicted_positions(teacher, batch, last_hidden(teacher, teacher_out))  # [N, D]
                loss = loss + options.contrastive_weight * token_contrastive_loss(s, t, bank.negatives(), options.temperature)
                bank.push(t)
            return loss

        losses = train_steps(
            [
                {"params": weight_parameters(student), "lr": options.learning_rate},
                {"params": quantizer_parameters(student), "lr": options.clip_learning_rate},
            ],
            batches,
            loss_of,
            steps=options.steps,
            learning_rate=options.learning_rate,
            seed=options.seed,
        )
    student.eval()
    report = {"options": vars(options).copy(), "storage": storage_report(student)}
    if losses:
        report["loss"] = {"first": losses[0], "last": losses[-1]}
    return student, report
