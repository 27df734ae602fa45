"""Early exiting for NAG-NER (LECO's NER application): a sentence leaves the encoder after an
intermediate layer once its exits agree, and the detector and decoder run on that layer.

Design (two-stage, as DeeBERT): the trained model stays frozen; every layer below the last gets an
*exit bridge*, a d × d linear map (identity at the start) from that layer's word states into the
space the shared heads were trained on, learned with the model's own loss on the bridged states
(`nagner.exit_training`). The last exit is the model itself, so a sentence that never exits gets
exactly the model's prediction.

What the exits compare: after each layer, the detector runs on the bridged word states and gives
the sentence's *slot signature* — which words open decoder slots and how many (the structure the
decoder will fill) — and its uncertainty, the largest normalised binary entropy of a word's start
probability. A structured exit rule (`nagner.compression.leco.structured_rules`: agreement, vote,
uncertainty) decides on those; the decoder runs once, at the exit. Detector-level agreement is
what makes exiting cheap: comparing decoded entity sets would run the decoder at every exit.

Inference is per window at batch 1 (as early exiting is measured); forward hooks stop the encoder
at the exit, so the layers after it never run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from nagner.common.atomic import atomic_folder
from nagner.common.errors import InputError
from nagner.common.state_dicts import copy_tensors
from nagner.compression.leco.stopping import run_until_exit
from nagner.compression.leco.structured_rules import StructuredExitRule, decide_structured
from nagner.data.example import Entity, Sentence
from nagner.modeling.decoding import Found
from nagner.modeling.detector import Detection
from nagner.modeling.encoding import NagNerCollator, encode_sentences
from nagner.modeling.inference import merge_windows
from nagner.modeling.predictor import pool_words
from nagner.modeling.slots import inference_slot_counts

CONFIG_FILE = "exits.json"
WEIGHTS_FILE = "exits.safetensors"


class ExitBridges(nn.Module):
    """One identity-initialised d × d linear map per encoder layer below the last.

    Args:
        hidden_size: the encoder's width d.
        layers: the encoder's number of layers L (bridges for layers 1 … L − 1).
        entity_types: the model's entity types (checked when the bridges are used with a model).
    """

    def __init__(self, hidden_size: int, layers: int, entity_types: list[str]):
        super().__init__()
        if layers < 2:
            raise ValueError(f"early exiting needs at least 2 encoder layers, got {layers}")
        self.hidden_size, self.layers, self.entity_types = hidden_size, layers, list(entity_types)
        self.bridges = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(layers - 1))
        with torch.no_grad():
            for bridge in self.bridges:
                bridge.weight.copy_(torch.eye(hidden_size))
                bridge.bias.zero_()

    @classmethod
    def for_model(cls, model: Any) -> ExitBridges:
        """Identity bridges sized for ``model`` (a `NagNerModel`)."""
        return cls(model.encoder.config.hidden_size, len(model.encoder.encoder.layer), model.config.entity_types)

    def forward(self, layer: int, words: torch.Tensor) -> torch.Tensor:
        """Word states (B, n, d) of encoder layer ``layer`` (1-based) → the heads' space; the last
        layer's pass through unchanged."""
        return words if layer == self.layers else self.bridges[layer - 1](words)

    def check_fits(self, model: Any, source: str = "exit bridges") -> None:
        """ValueError unless these bridges were made for a model of ``model``'s shape and types."""
        layers, hidden = len(model.encoder.encoder.layer), model.encoder.config.hidden_size
        if (self.layers, self.hidden_size) != (layers, hidden):
            raise ValueError(
                f"{source}: made for {self.layers} layers of width {self.hidden_size}; "
                f"the model has {layers} of width {hidden}"
            )
        if self.entity_types != list(model.config.entity_types):
            raise ValueError(f"{source}: made for entity types {self.entity_types}, the model has {model.config.entity_types}")

    def save_pretrained(self, directory: str | Path) -> None:
        """``exits.json`` + ``exits.safetensors`` in ``directory``, written atomically."""
        with atomic_folder(directory) as folder:
            config = {"hidden_size": self.hidden_size, "layers": self.layers, "entity_types": self.entity_types}
            (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
            save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_FILE))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ExitBridges:
        """Load bridges saved by `save_pretrained`; `InputError` for a folder that holds none."""
        folder = Path(directory)
        config_path = folder / CONFIG_FILE
        if not config_path.is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise InputError(f"not an exit-bridge folder (expected {CONFIG_FILE} and {WEIGHTS_FILE})", folder)
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            bridges = cls(int(config["hidden_size"]), int(config["layers"]), list(config["entity_types"]))
        except (ValueError, KeyError, TypeError) as error:
            raise InputError(f"unreadable exit-bridge config: {error}", config_path) from None
        try:
            copy_tensors(bridges.state_dict(), load_file(str(folder / WEIGHTS_FILE)), str(folder / WEIGHTS_FILE))
        except ValueError as error:
            raise InputError(str(error), folder / WEIGHTS_FILE) from None
        return bridges


def slot_signature(detection: Detection, word_mask: torch.Tensor, config: Any) -> list[tuple[Hashable, float]]:
    """Per batch row: (slot signature, uncertainty). The signature is ((word, slots), …) for every
    word that opens decoder slots; the uncertainty the largest normalised binary entropy of a
    word's start probability (0 sure, 1 a coin flip)."""
    counts = inference_slot_counts(detection.start_logits, detection.count_logits, word_mask, config)  # (B, n)
    p = detection.start_logits.float().sigmoid().clamp(1e-7, 1 - 1e-7)  # (B, n)
    entropy = -(p * p.log() + (1 - p) * (1 - p).log()) / math.log(2)  # (B, n)
    entropy = entropy.masked_fill(~word_mask, 0.0).amax(-1)  # (B,)
    rows = []
    for row, score in zip(counts.tolist(), entropy.tolist()):
        rows.append((tuple((i, c) for i, c in enumerate(row) if c), float(score)))
    return rows


def layer_word_states(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Word states (B, n, d) after every encoder layer 1 … L (pooled as the model pools; no dropout)."""
    hidden = model.encoder(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True
    ).hidden_states  # L + 1 tensors (B, T, d): the embeddings, then each layer
    return tuple(pool_words(states, batch["word_first"], batch["word_last"]) for states in hidden[1:])


@dataclass
class ExitRecord:
    """One window's outputs at every exit: (signature, uncertainty) and the decoded entities."""

    exits: list[tuple[Hashable, float]]
    found: list[list[Found]]


def _features(model: Any, sentences: list[Sentence]) -> tuple[list[dict[str, Any]], NagNerCollator]:
    if model.tokenizer is None:
        raise ValueError("this model has no tokenizer; load it with from_pretrained or from_encoder")
    features, _ = encode_sentences(sentences, model.tokenizer, model.config)
    return [f for f in features if f["word_first"]], NagNerCollator(model.tokenizer.pad_token_id or 0, model.config.max_pointers)


@torch.no_grad()
def record_exits(model: Any, bridges: ExitBridges, sentences: list[Sentence], batch_size: int = 32) -> tuple[list[dict[str, Any]], list[ExitRecord]]:
    """Every window's signature, uncertainty and decoded entities at every exit (the decoder runs
    at each exit here, to sweep exit rules offline on the same weights: `entities_at_exits`)."""
    bridges.check_fits(model)
    model.eval()
    features, collate = _features(model, sentences)
    records = []
    for begin in range(0, len(features), batch_size):
        batch = {k: v.to(model.device) for k, v in collate(features[begin : begin + batch_size]).items()}
        per_layer = []
        for layer, words in enumerate(layer_word_states(model, batch), start=1):
            words = bridges(layer, words)
            detection = model.detector(words)
            per_layer.append((slot_signature(detection, batch["word_mask"], model.config),
                              model.decode(words, batch["word_mask"], detection)))
        for row in range(batch["input_ids"].shape[0]):
            records.append(ExitRecord([exits[row] for exits, _ in per_layer], [found[row] for _, found in per_layer]))
    return features, records


def entities_at_exits(
    model: Any, sentences: list[Sentence], features: list[dict[str, Any]], records: list[ExitRecord], rule: StructuredExitRule
) -> tuple[list[list[Entity]], list[int]]:
    """What `predict_early` would answer under ``rule``, from `record_exits`' records: the entities
    of each sentence and the exit layer of each window."""
    layers = [decide_structured(rule, record.exits) for record in records]
    decoded = [(features, [record.found[layer - 1] for record, layer in zip(records, layers)])]
    return merge_windows(sentences, decoded, model.config.entity_types), layers


def _exit_window(
    model: Any, bridges: ExitBridges, batch: dict[str, torch.Tensor], rule: StructuredExitRule, threshold: float | None
) -> tuple[list[Found], int]:
    """One window (batch 1): run the encoder until ``rule`` fires, decode there → (entities, layer)."""
    blocks = model.encoder.encoder.layer
    rule.reset()

    def on_layer(index: int, hidden: torch.Tensor) -> tuple[torch.Tensor, Detection] | None:
        words = bridges(index + 1, pool_words(hidden, batch["word_first"], batch["word_last"]))  # (1, n, d)
        detection = model.detector(words)
        (signature, uncertainty), = slot_signature(detection, batch["word_mask"], model.config)
        return (words, detection) if rule.step(signature, uncertainty) or index == len(blocks) - 1 else None

    (words, detection), layer = run_until_exit(
        lambda: model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]), blocks, on_layer
    )
    return model.decode(words, batch["word_mask"], detection, threshold)[0], layer


@torch.no_grad()
def predict_early(
    model: Any, bridges: ExitBridges, sentences: list[Sentence], rule: StructuredExitRule, threshold: float | None = None
) -> tuple[list[list[Entity]], list[int]]:
    """Entities of each sentence with early exiting, and the exit layer (1-based) of each window:
    one window at a time, the encoder stopped at the first exit where ``rule`` fires.
    ``threshold``: the entity score threshold (default: the model's)."""
    bridges.check_fits(model)
    model.eval()
    features, collate = _features(model, sentences)
    decoded, layers = [], []
    for feature in features:
        batch = {k: v.to(model.device) for k, v in collate([feature]).items()}
        found, layer = _exit_window(model, bridges, batch, rule, threshold)
        decoded.append(found)
        layers.append(layer)
    return merge_windows(sentences, [(features, decoded)], model.config.entity_types), layers


class EarlyExitPredictor:
    """A `NagNerModel` with exit bridges and a rule, usable wherever a model predicts sentences
    (``predict_sentences``, ``config``, ``tokenizer``); ``exit_layers`` collects the exit layer of
    every window predicted so far."""

    def __init__(self, model: Any, bridges: ExitBridges, rule: StructuredExitRule):
        bridges.check_fits(model)
        self.model, self.bridges, self.rule = model, bridges, rule
        self.exit_layers: list[int] = []

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    @property
    def layers(self) -> int:
        return self.bridges.layers

    def predict_sentences(
        self, sentences: list[Sentence], batch_size: int = 32, threshold: float | None = None
    ) -> list[list[Entity]]:
        """Entities of each sentence (``batch_size`` is accepted for the common signature: early
        exiting runs one window at a time)."""
        entities, layers = predict_early(self.model, self.bridges, sentences, self.rule, threshold)
        self.exit_layers.extend(layers)
        return entities
