"""Training the exit bridges of a trained NAG-NER model (`nagner.modeling.early_exit`).

The model is frozen and in eval mode (no dropout, no random negative slots: the loss is
deterministic given the batches); the encoder runs once per batch without gradients, and every
bridge learns from the model's own loss — detector, count, pointers and types — on its layer's
bridged word states, the exits' losses averaged. Gold starts always open slots in the loss
(`training_slot_counts`), so each bridge learns to decode the gold entities as well as to say
NONE on the detector's false starts.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import torch

from nagner.data.example import Sentence
from nagner.modeling import NagNerCollator, encode_sentences
from nagner.modeling.early_exit import ExitBridges, layer_word_states

logger = logging.getLogger(__name__)

TARGETS = ("start_labels", "end_labels", "count_labels", "entity_starts", "entity_pointers", "entity_types")


def train_exit_bridges(
    model: Any,
    sentences: list[Sentence],
    epochs: float = 1.0,
    learning_rate: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    bridges: ExitBridges | None = None,
) -> tuple[ExitBridges, list[float]]:
    """Bridges for ``model`` (new identity ones unless ``bridges`` is given) trained on
    ``sentences`` for ``epochs`` (fractions allowed) with AdamW; returns them with the mean loss of
    each logged stretch of 50 steps (and of the last, shorter one)."""
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
        exit_losses = [
            model.heads_forward(bridges(layer, words), batch["word_mask"], **targets).loss
            for layer, words in enumerate(states[:-1], start=1)
        ]
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
