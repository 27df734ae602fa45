"""A multi-exit classifier over any transformers encoder whose layers are ``encoder.layer`` (BERT
family): an exit after every layer, trained jointly, and early-exit inference that really stops.

Training loss: the weighted mean of the exits' cross entropies, weight ∝ layer number (PABEE's and
PCEE-BERT's default ``asc`` schema). Inference (`predict_early`): forward hooks read each layer's
output, run its exit and the `ExitRule`; when the rule fires the forward pass is abandoned there, so
the layers after the exit never run (batch 1, as early exiting is measured).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from nagner.common.atomic import atomic_folder
from nagner.common.errors import InputError
from nagner.common.state_dicts import copy_tensors
from nagner.compression.leco.exit_rules import ExitRule
from nagner.compression.leco.exits import ExitHead, MixedExit
from nagner.compression.leco.stopping import run_until_exit

EXITS_CONFIG = "exits.json"
EXITS_WEIGHTS = "exits.safetensors"


class MultiExitClassifier(nn.Module):
    """``encoder`` plus one exit per layer: ``exits`` given as type names (one per layer, or one for
    all), or None for a searchable `MixedExit` at every layer."""

    def __init__(
        self, encoder: nn.Module, classes: int, exits: Sequence[str] | str | None = None, labels: Sequence[str] | None = None
    ):
        """labels: the name of each class (saved with the model), or None."""
        super().__init__()
        if labels is not None and len(labels) != classes:
            raise ValueError(f"{len(labels)} label names for {classes} classes")
        self.encoder = encoder
        self.classes = classes
        self.labels = list(labels) if labels is not None else None
        layers = len(encoder.encoder.layer)
        hidden = encoder.config.hidden_size
        if exits is None:
            self.exits = nn.ModuleList(MixedExit(hidden, classes) for _ in range(layers))
        else:
            kinds = [exits] * layers if isinstance(exits, str) else list(exits)
            if len(kinds) != layers:
                raise ValueError(f"{len(kinds)} exit types for {layers} layers")
            self.exits = nn.ModuleList(ExitHead(kind, hidden, classes) for kind in kinds)

    @property
    def layers(self) -> int:
        return len(self.exits)

    def exit_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Every exit's logits: (B, L, C)."""
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        return torch.stack([head(states[i + 1], attention_mask) for i, head in enumerate(self.exits)], dim=1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"logits": (B, L, C), "loss": weighted mean of the exits' CE}`` (loss with labels)."""
        logits = self.exit_logits(input_ids, attention_mask)
        output = {"logits": logits}
        if labels is not None:
            weights = torch.arange(1, self.layers + 1, dtype=logits.dtype, device=logits.device)  # (L,)
            losses = torch.stack([F.cross_entropy(logits[:, i], labels) for i in range(self.layers)])
            output["loss"] = (weights * losses).sum() / weights.sum()
        return output

    def save_pretrained(self, directory: str | Path, tokenizer: Any = None) -> None:
        """The encoder (``save_pretrained``: config + safetensors), the exits (``exits.json``:
        classes, label names and each layer's type; ``exits.safetensors``) and, if given, the
        tokenizer in ``directory``, written atomically. A model still searching (`MixedExit` exits)
        is refused: `discretize` and train it first."""
        if self.exit_architecture_parameters():
            raise ValueError("the exits are still a search mixture: discretize and train them before saving")
        with atomic_folder(directory) as folder:
            self.encoder.save_pretrained(folder)
            if tokenizer is not None:
                tokenizer.save_pretrained(folder)
            config = {"classes": self.classes, "labels": self.labels, "exits": self.chosen_exits()}
            (folder / EXITS_CONFIG).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
            save_file({k: v.detach().contiguous() for k, v in self.exits.state_dict().items()}, str(folder / EXITS_WEIGHTS))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> MultiExitClassifier:
        """A model saved by `save_pretrained` (the encoder through ``AutoModel``), in eval mode;
        `InputError` for a folder without exits."""
        from transformers import AutoModel

        folder = Path(directory)
        if not (folder / EXITS_CONFIG).is_file() or not (folder / EXITS_WEIGHTS).is_file():
            raise InputError(f"not a multi-exit model folder (expected {EXITS_CONFIG} and {EXITS_WEIGHTS})", folder)
        try:
            config = json.loads((folder / EXITS_CONFIG).read_text(encoding="utf-8"))
            model = cls(AutoModel.from_pretrained(str(folder)), int(config["classes"]), list(config["exits"]), config.get("labels"))
            copy_tensors(model.exits.state_dict(), load_file(str(folder / EXITS_WEIGHTS)), str(folder / EXITS_WEIGHTS))
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"the exits do not load: {error}", folder) from None
        return model.eval()

    def exit_architecture_parameters(self) -> list[nn.Parameter]:
        """The α of every `MixedExit` (empty once the exits are discrete)."""
        return [head.alpha for head in self.exits if isinstance(head, MixedExit)]

    def chosen_exits(self) -> list[str]:
        """Each layer's exit type: the discrete one, or a mixture's best."""
        return [head.best() if isinstance(head, MixedExit) else head.kind for head in self.exits]

    @torch.no_grad()
    def predict_early(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rule: ExitRule) -> tuple[int, int]:
        """(class, exit layer 1-based) for one input (batch 1), stopping at the first exit where
        ``rule`` fires (the last layer's answer otherwise)."""
        if input_ids.shape[0] != 1:
            raise ValueError("early exiting runs one input at a time (batch 1)")
        rule.reset()

        def on_layer(index: int, hidden: torch.Tensor) -> int | None:
            probabilities = self.exits[index](hidden, attention_mask).softmax(-1)[0]  # (C,)
            answer = rule.step(probabilities)
            if answer is None and index == self.layers - 1:
                answer = int(probabilities.argmax())
            return answer

        return run_until_exit(
            lambda: self.encoder(input_ids=input_ids, attention_mask=attention_mask), self.encoder.encoder.layer, on_layer
        )
