"""Training the exit bridges of a trained NAG-NER model (`nagner.modeling.early_exit`).

The model is frozen and in eval mode (no dropout, no random negative slots: the loss is
deterministic given the batches); the encoder runs once per batch without gradients, and every
bridge learns from the model's own loss — detector, count, pointers and types — on its layer's
bridged word states, the exits' losses averaged. Gold starts always open slots in the loss
(`training_slot_counts`), so each bridge learns to decode the gold entities as well as to say
NONE on the detector's false starts.

With ``distillation`` > 0 each exit also learns the last layer's detector (self-distillation, as
FastBERT's exits learn the final classifier): the binary KL from the last layer's start and end
probabilities to the exit's, and the KL between their slot-count distributions, averaged over
real words and weighted by ``distillation``. The exit rules read exactly these outputs (which
words open how many slots, and how sure the start decisions are), so an exit that imitates the
last layer's detector agrees with it where it can and is unsure where it cannot.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import torch
import torch.nn.functional as F

from nagner.data.example import Sentence
from nagner.modeling import NagNerCollator, encode_sentences
from nagner.modeling.detector import Detection
from nagner.modeling.early_exit import ExitBridges, layer_word_states

logger = logging.getLogger(__name__)

TARGETS = ("start_labels", "end_labels", "count_labels", "entity_starts", "entity_pointers", "entity_types")


def binary_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(Bernoulli(σ(teacher)) ‖ Bernoulli(σ(student))), ≥ 0, zero where they agree."""
    p = teacher_logits.sigmoid()
    log_q, log_not_q = F.logsigmoid(student_logits), F.logsigmoid(-student_logits)
    log_p, log_not_p = F.logsigmoid(teacher_logits), F.logsigmoid(-teacher_logits)
    return p * (log_p - log_q) + (1 - p) * (log_not_p - log_not_q)


def detector_distillation(student: Detection, teacher: Detection, word_mask: torch.Tensor) -> torch.Tensor:
    """Mean over real words of KL(start) + KL(end) + KL(slot count): how far an exit's detector
    is from the last layer's. word_mask: (B, n)."""
    count = F.kl_div(student.count_logits.log_softmax(-1), teacher.count_logits.log_softmax(-1),
                     log_target=True, reduction="none").sum(-1)  # (B, n)
    per_word = binary_kl(student.start_logits, teacher.start_logits) + binary_kl(student.end_logits, teacher.end_logits) + count
    return per_word[word_mask].mean()


def train_exit_bridges(
    model: Any,
    sentences: list[Sentence],
    epochs: float = 1.0,
    learning_rate: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    bridges: ExitBridges | None = None,
    distillation: float = 0.0,
) -> tuple[ExitBridges, list[float]]:
    """Bridges for ``model`` (new identity ones unless ``bridges`` is given) trained on
    ``sentences`` for ``epochs`` (fractions allowed) with AdamW, plus ``distillation`` × the
    detector's self-distillation (module docstring); returns them with the mean loss of each
    logged stretch of 50 steps (and of the last, shorter one)."""
    if not sentences:
        raise ValueError("no training sentences")
    bridges = ExitBridges.for_model(model) if bridges is None else bridges
    bridges.check_fits(model)
    model.eval()
    model.requires_grad_(False)
    features, _ = encode_sentences(sentences, model.tokenizer, model.config, with_targets=True)
    collate = NagNerCollator(model.tokenizer.pad_token_id or 0, model.config.max_pointers)
    steps_per_epoch = max(1, -(-len(features) // batch_size))
    total = max(1, round(epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW(bridges.parameters(), lr=learning_rate, weight_decay=0.0)
    order_rng, losses, stretch = random.Random(seed), [], []
    torch.manual_seed(seed)
    bridges.train()
    order: list[int] = []
    for step in range(total):
        if step % steps_per_epoch == 0:
            order = list(range(len(features)))
            order_rng.shuffle(order)
        chunk = order[(step % steps_per_epoch) * batch_size :][:batch_size]
        batch = {k: v.to(model.device) for k, v in collate([features[i] for i in chunk]).items()}
        with torch.no_grad():
            states = layer_word_states(model, batch)  # L × (B, n, d)
        targets = {k: batch[k] for k in TARGETS}
        if distillation:
            with torch.no_grad():
                teacher = model.detector(states[-1])
        exit_losses = []
        for layer, words in enumerate(states[:-1], start=1):
            output = model.heads_forward(bridges(layer, words), batch["word_mask"], **targets)
            loss = output.loss
            if distillation:
                student = Detection(output.start_logits, output.end_logits, output.count_logits)
                loss = loss + distillation * detector_distillation(student, teacher, batch["word_mask"])
            exit_losses.append(loss)
        loss = torch.stack(exit_losses).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        stretch.append(float(loss.detach()))
        if len(stretch) == 50 or step == total - 1:
            losses.append(sum(stretch) / len(stretch))
            logger.info("exit bridges: step %d/%d, loss %.4f", step + 1, total, losses[-1])
            stretch = []
    bridges.eval()
    return bridges, losses
