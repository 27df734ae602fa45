"""LoRETTA (Yang et al., NAACL 2024): adapters whose matrices are tensor trains
(`TensorTrainLinear`, the official code's format and mode table), in the official placements.

LoRETTA_rep — LoRA with A (d_in → r) and B (r → d_out) each a tensor train (no bias):

    y = W0·x + b + (α/r)·B·A·dropout(x)

  Official targets: ``q_proj``, ``v_proj`` (Llama family), ``query``, ``value`` (BERT family).
  Mergeable; `as_lora` contracts the trains, so `export_peft_lora` writes a plain `peft` LoRA.

LoRETTA_adp — a tensor-train bottleneck adapter (Down: d → bottleneck, Up: bottleneck → d, both
with bias, activation between, scaling s):

    output side:  y' = y + s·Up(act(Down(dropout(y))))                    y = W·x + b
    input side:   y' = W·(x + s·Up(act(Down(dropout(x))))) + b = y + W·(s·Up(…))

  Official placements (`LorettaAdpConfig.for_llama`, `for_bert`): in a Llama block an input-side
  adapter on ``gate_proj`` and on ``up_proj`` and an output-side one on ``down_proj``; in a BERT
  layer an output-side adapter on ``attention.output.dense`` and on the FFN ``output.dense``.
  Non-linear, so not mergeable.

Where we differ from the official code: both methods start as an exact no-op (B's last core zero
for _rep, Up's last core and bias zero for _adp), where the official cores start random and the
model's outputs change before the first step (the paper subtracts the initial product instead;
the code does not). Training moves every core from the first steps on (LoRA's B = 0 idea, one
core at a time).

The paper's trainable budgets on LLaMA-2-7B also count every RMSNorm weight (2·32 + 1 norms of
4096: 266,240), which the paper trains beside the adapter: LoRETTA_adp (bottleneck 64, TT rank 5,
official placement) 610,560 + 266,240 = 876,800 ("0.88M"); LoRETTA_rep (r = 16, TT rank 8, q and
v) 241,664 + 266,240 = 507,904 ("0.51M"). `nagner.peft` counts the adapter; train the norms with
the task's own means (e.g. ``trained_modules`` in `knowledge_qa`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.pytorch_utils import Conv1D

from nagner.peft.adapter import Adapter
from nagner.peft.config import AdapterConfig, register_method
from nagner.peft.layer import AdaptedLayer
from nagner.peft.methods.lora import LoraAdapter, LoraConfig
from nagner.peft.methods.loretta.tensor_train import TensorTrainLinear
from nagner.peft.targets import matches

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


@register_method
@dataclass
class LorettaRepConfig(LoraConfig):
    """LoRETTA_rep: LoRA with tensor-train factors (official defaults r=8, α=16, dropout 0.05).

    Args:
        r, lora_alpha, lora_dropout, use_rslora, rank_pattern, alpha_pattern: as `LoraConfig`.
        tensor_rank: the inner TT rank of A and B (the paper tries 2, 5, 10, 20; its LLaMA runs 8).
    """

    method = "loretta_rep"
    peft_type = "LORETTA_REP"
    peft_native = False
    lora_alpha: float = 16
    lora_dropout: float = 0.05
    tensor_rank: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tensor_rank < 1:
            raise ValueError(f"tensor_rank must be >= 1, got {self.tensor_rank}")
        if self.init_lora_weights is not True:
            raise ValueError(
                "loretta_rep has one init (random cores, B's last core zero): leave init_lora_weights=True"
            )

    def build_adapter(self, layer: AdaptedLayer, module_name: str) -> LorettaRepAdapter:
        r, alpha = self.rank_and_alpha(module_name)
        if r < 1:
            raise ValueError(f"{module_name}: loretta_rep needs r >= 1, got {r}")
        return LorettaRepAdapter(layer.in_features, layer.out_features, r, alpha, self)


class LorettaRepAdapter(LoraAdapter):
    """LoRA whose ``lora_A`` (d_in → r) and ``lora_B`` (r → d_out) are `TensorTrainLinear`s."""

    def __init__(self, d_in: int, d_out: int, r: int, alpha: float, config: LorettaRepConfig):
        super().__init__(d_in, d_out, r, alpha, config)  # builds dense lora_A / lora_B, replaced here
        self.lora_A = TensorTrainLinear(d_in, r, config.tensor_rank)
        self.lora_B = TensorTrainLinear(r, d_out, config.tensor_rank)
        self.reset_lora_parameters()

    @torch.no_grad()
    def reset_lora_parameters(self) -> None:
        """Random cores everywhere, then B's last core zero: B = 0, so ΔW = 0 exactly."""
        if not isinstance(self.lora_B, TensorTrainLinear):
            return  # called by LoraAdapter.__init__ before the TT factors replace the dense ones
        self.lora_A.reset_parameters()
        self.lora_B.reset_parameters()
        nn.init.zeros_(self.lora_B.cores[-1])

    def weight_A(self) -> torch.Tensor:
        """A: (r, d_in), contracted from its train."""
        return self.lora_A.weight().T

    def weight_B(self) -> torch.Tensor:
        """B: (d_out, r), contracted from its train."""
        return self.lora_B.weight().T

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tensor_rank={self.lora_A.ranks[1]}"


@register_method
@dataclass
class LorettaAdpConfig(AdapterConfig):
    """LoRETTA_adp: a tensor-train bottleneck adapter on a host's output, or on its input.

    Args:
        bottleneck: the adapter's inner width. tensor_rank: inner TT rank of Down and Up.
        non_linearity: "relu", "tanh" or "gelu". scaling: a constant s, or "learned" (starts at 1).
        dropout: dropout on the adapter's input.
        input_side_modules: targets (names or suffixes as in ``target_modules``, or a regex) whose
            adapter acts on the host's input, the official "mh_adapter" (Llama's ``gate_proj`` and
            ``up_proj``); the other targets get it on their output.

    The official placements with its defaults (bottleneck 64, ReLU, TT rank 5): `for_llama`,
    `for_bert`.
    """

    method = "loretta_adp"
    peft_type = "LORETTA_ADP"
    bottleneck: int = 64
    tensor_rank: int = 5
    non_linearity: str = "relu"
    scaling: float | str = 1.0
    dropout: float = 0.0
    input_side_modules: list[str] | str | None = None

    @classmethod
    def for_llama(cls, **fields: Any) -> LorettaAdpConfig:
        """The official Llama placement: input side of ``gate_proj`` and ``up_proj``, output side of
        ``down_proj`` (three adapters per block)."""
        placement = {"target_modules": ["gate_proj", "up_proj", "down_proj"], "input_side_modules": ["gate_proj", "up_proj"]}
        return cls(**{**placement, **fields})

    @classmethod
    def for_bert(cls, **fields: Any) -> LorettaAdpConfig:
        """The official BERT-family placement: output side of ``attention.output.dense`` and of the
        FFN's ``output.dense`` (two adapters per layer)."""
        return cls(**{"target_modules": r".*\.output\.dense", **fields})

    def __post_init__(self) -> None:
        if self.bottleneck < 1 or self.tensor_rank < 1:
            raise ValueError(
                f"bottleneck and tensor_rank must be >= 1, got {self.bottleneck}, {self.tensor_rank}"
            )
        if self.non_linearity not in ACTIVATIONS:
            raise ValueError(
                f"non_linearity must be one of {', '.join(ACTIVATIONS)}, got {self.non_linearity!r}"
            )
        if isinstance(self.scaling, str) and self.scaling != "learned":
            raise ValueError(f"scaling must be a number or 'learned', got {self.scaling!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def build_adapter(self, layer: AdaptedLayer, module_name: str) -> LorettaAdpAdapter:
        input_side = self.input_side_modules is not None and matches(module_name, self.input_side_modules)
        if input_side:
            return LorettaAdpAdapter(layer.in_features, self, host=layer.base_layer)
        return LorettaAdpAdapter(layer.out_features, self)


class LorettaAdpAdapter(Adapter):
    """``s·up(act(down(dropout(v))))`` with tensor-train ``down`` (d → bottleneck) and ``up``
    (bottleneck → d), added to the host's output (v = y, d = d_out) or, with a ``host``, to its
    input (v = x, d = d_in; the host's weight maps the change to the output).
    ``adapter_scaling`` is a parameter only when scaling is "learned"."""

    def __init__(self, d: int, config: LorettaAdpConfig, host: nn.Module | None = None):
        super().__init__()
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.down = TensorTrainLinear(d, config.bottleneck, config.tensor_rank, bias=True)
        self.act = ACTIVATIONS[config.non_linearity]()
        self.up = TensorTrainLinear(config.bottleneck, d, config.tensor_rank, bias=True)
        if config.scaling == "learned":
            self.adapter_scaling: nn.Parameter | float = nn.Parameter(torch.ones(1))
        else:
            self.adapter_scaling = float(config.scaling)
        # The host is not a submodule of its adapter (its weights belong to the model), so it is kept
        # as a plain attribute: not in the state dict, and a deep copy of the model points the
        # copied adapter at the copied host.
        object.__setattr__(self, "_host", host)
        with torch.no_grad():
            nn.init.zeros_(self.up.cores[-1])  # Up(·) = 0 at the start
            nn.init.zeros_(self.up.bias)

    @property
    def input_side(self) -> bool:
        return self._host is not None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        source = x if self._host is not None else y
        h = self.act(self.down(self.dropout(source.to(self.up.cores[0].dtype))))  # (…, bottleneck)
        change = self.adapter_scaling * self.up(h)  # (…, d)
        if self._host is None:
            return y + change.to(y.dtype)
        host = self._host
        weight = host.weight.T if isinstance(host, Conv1D) else host.weight  # (d_out, d_in)
        return y + F.linear(change.to(weight.dtype), weight).to(y.dtype)

    def extra_repr(self) -> str:
        return "input side" if self.input_side else "output side"
