"""LECO for sentence classification, end to end: labelled texts → a multi-exit classifier (exits
searched by first-order DARTS on held-out batches, discretised, then trained again from the
pretrained encoder with the same budget) → per-exit accuracy and each exit rule's accuracy and
speed-up in layers, and early-exit prediction. `nagner leco` is its command line.

Data: JSON lines (or a JSON array) of ``{"text": str, "label": str | int | bool}``, optionally with
``"text_pair"`` (encoded as a pair: "question [SEP] facts"). Labels are kept as strings; the
model's classes are the training file's labels, sorted.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nagner.common.errors import InputError
from nagner.common.jsonl import iter_json_records
from nagner.compression.leco.exit_rules import (
    ComparisonRule,
    EntropyRule,
    ExitRule,
    MaxProbabilityRule,
    PatienceRule,
    decide,
)
from nagner.compression.leco.multi_exit import MultiExitClassifier
from nagner.compression.leco.search import search_exits

Batch = dict[str, torch.Tensor]


@dataclass
class LabelledText:
    text: str
    label: str
    text_pair: str | None = None


def read_labelled_texts(path: str | Path, labelled: bool = True) -> list[LabelledText]:
    """The records of ``path``; `InputError` (file, line, what was expected) for a bad one. With
    ``labelled=False`` a record needs no label (and any label is ignored: ``label`` is "")."""
    records = []
    for line, record in iter_json_records(path):
        if not isinstance(record, dict):
            wanted = '"text" and "label"' if labelled else '"text"'
            raise InputError(f"expected a JSON object with {wanted}, got {type(record).__name__}", path, line)
        text, label, pair = record.get("text"), record.get("label", "") if labelled else "", record.get("text_pair")
        if not isinstance(text, str) or not text.strip():
            raise InputError("expected a non-empty string \"text\"", path, line)
        if isinstance(label, bool):
            label = "yes" if label else "no"
        if labelled and (not isinstance(label, (str, int)) or str(label) == ""):
            raise InputError("expected a \"label\" (a string, an integer or true/false)", path, line)
        if pair is not None and not isinstance(pair, str):
            raise InputError("expected \"text_pair\" to be a string", path, line)
        records.append(LabelledText(text, str(label), pair))
    if not records:
        raise InputError("no records", path)
    return records


def encode_texts(
    records: Sequence[LabelledText], tokenizer: Any, labels: Sequence[str] | None, max_length: int = 128
) -> list[dict[str, Any]]:
    """Token ids (truncated to ``max_length``) and, with ``labels``, the class index of each record
    (a label outside ``labels`` is an `InputError`)."""
    index = {label: i for i, label in enumerate(labels)} if labels is not None else None
    rows = []
    for number, record in enumerate(records, 1):
        encoded = tokenizer(record.text, record.text_pair, truncation=True, max_length=max_length)
        row: dict[str, Any] = {"input_ids": encoded["input_ids"]}
        if index is not None:
            if record.label not in index:
                raise InputError(f"record {number}: label {record.label!r} is not one the model knows ({', '.join(labels)})")
            row["label"] = index[record.label]
        rows.append(row)
    return rows


def make_batches(rows: Sequence[dict[str, Any]], size: int, seed: int | None = None) -> list[Batch]:
    """Padded batches of ``size`` (shuffled with ``seed``, else in order): input_ids and
    attention_mask (B, T), and labels (B,) when the rows have them."""
    order = list(range(len(rows)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    batches = []
    for start in range(0, len(order), size):
        chunk = [rows[i] for i in order[start : start + size]]
        width = max(len(r["input_ids"]) for r in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for i, r in enumerate(chunk):
            ids[i, : len(r["input_ids"])] = torch.as_tensor(r["input_ids"])
            mask[i, : len(r["input_ids"])] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if "label" in chunk[0]:
            batch["labels"] = torch.tensor([r["label"] for r in chunk])
        batches.append(batch)
    return batches


def train_multi_exit(model: MultiExitClassifier, batches: Sequence[Batch], epochs: int, learning_rate: float) -> list[float]:
    """AdamW on every trainable parameter (the encoder and the exits) with the joint exit loss,
    ``epochs`` passes over ``batches``; returns the loss of each step. The model ends in eval mode."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    model.train()
    losses = []
    for _ in range(epochs):
        for batch in batches:
            loss = model(**batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    model.eval()
    return losses


@dataclass
class LecoRun:
    """What `train_leco` produced: the trained model (its exit types: ``model.chosen_exits()``) and
    the losses."""

    model: MultiExitClassifier
    search_losses: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)


def train_leco(
    encoder: str,
    train: Sequence[Batch],
    classes: int,
    *,
    held_out: Sequence[Batch] = (),
    exits: str = "search",
    search_steps: int = 100,
    epochs: int = 1,
    learning_rate: float = 1e-4,
    seed: int = 0,
) -> LecoRun:
    """A multi-exit classifier on the pretrained ``encoder`` (a folder or a model name). ``exits``
    "search": `search_exits` for ``search_steps`` alternate steps (α on ``held_out``), `discretize`,
    then the chosen exits are trained from a fresh copy of the pretrained encoder, so the final
    model has the same training budget as one with fixed exits; or one exit type (`EXIT_TYPES`) at
    every layer, trained directly."""
    from transformers import AutoModel

    torch.manual_seed(seed)
    search_losses: list[float] = []
    if exits == "search":
        if not held_out:
            raise ValueError("the exit search needs held-out batches")
        searching = MultiExitClassifier(AutoModel.from_pretrained(encoder), classes, None)
        result = search_exits(searching, train, held_out, search_steps)
        chosen: list[str] | str = result.exits
        search_losses = result.held_out_losses
        torch.manual_seed(seed)
        model = MultiExitClassifier(AutoModel.from_pretrained(encoder), classes, chosen)  # `discretize`, on a fresh encoder
    else:
        model = MultiExitClassifier(AutoModel.from_pretrained(encoder), classes, exits)
    losses = train_multi_exit(model, train, epochs, learning_rate)
    return LecoRun(model, search_losses, losses)


@torch.no_grad()
def exit_probabilities(model: MultiExitClassifier, batches: Sequence[Batch]) -> torch.Tensor:
    """Class probabilities of every exit for every input: (N, L, C)."""
    model.eval()
    return torch.cat([model.exit_logits(b["input_ids"], b["attention_mask"]).softmax(-1) for b in batches])


RULE_NAMES = {"cobee": ComparisonRule, "pabee": PatienceRule, "entropy": EntropyRule, "max-probability": MaxProbabilityRule}
_RULE = re.compile(r"^(cobee|pabee|entropy|max-probability):(.+)$")


def parse_exit_rule(text: str) -> ExitRule:
    """"cobee:3" (exit once 3 exits predicted the same class), "pabee:2" (once the prediction held
    for 2 more exits), "entropy:0.3" (normalised entropy below 0.3), "max-probability:0.9";
    `ValueError` naming the forms for anything else."""
    match = _RULE.match(text.strip())
    forms = "cobee:VOTES, pabee:PATIENCE, entropy:THRESHOLD or max-probability:THRESHOLD"
    if match is None:
        raise ValueError(f"unknown exit rule {text!r}: expected {forms}")
    name, value = match.groups()
    counts = name in ("cobee", "pabee")  # a number of exits, else a threshold
    try:
        number = int(value) if counts else float(value)
    except ValueError:
        raise ValueError(f"exit rule {text!r}: expected {'an integer' if counts else 'a number'} after {name}:") from None
    if counts and number < 1:
        raise ValueError(f"exit rule {text!r}: expected ≥ 1")
    if not counts and not 0 < number <= 1:
        raise ValueError(f"exit rule {text!r}: expected 0 < threshold ≤ 1")
    return RULE_NAMES[name](number)


def rule_report(probabilities: torch.Tensor, labels: torch.Tensor, rule: ExitRule) -> dict[str, float]:
    """Accuracy, mean exit layer and speed-up in layers (L / mean exit layer) of ``rule`` over
    recorded exits: probabilities (N, L, C), labels (N,)."""
    layers, predictions = decide(rule, probabilities)
    mean_layer = float(layers.float().mean())
    return {
        "accuracy": float((predictions == labels).float().mean()),
        "mean_exit_layer": mean_layer,
        "layer_speed_up": probabilities.shape[1] / mean_layer,
    }
