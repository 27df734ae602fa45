"""MiLoRA (Zhang et al., Findings of EMNLP 2024, arXiv 2410.18035): the LoRA modules of a
transformer layer are experts, and one router per layer picks k of them for each prompt.

    probs = softmax(W_r · Ra(pool(H^l)))        H^l (b, n, d): the prompt entering layer l; W_r (N_l, d)
    gates = top-k of probs, renormalised        (b, N_l): p_m / Σ_{top-k} p_j, zero off the top k
    y_m   = W_m x + b_m + gates[:, m] · s · B_m A_m x        for expert (module) m of layer l, s = α/r

Routing runs once per prompt and per sample (`nagner.peft.prompt`: prefill vs decode, padding,
seq2seq, beams, mixed batches). An expert runs only on the rows (prompts) that selected it.

The paper leaves open how the router learns from the task loss; it says only that the selected
modules are applied and that k = N reduces to vanilla LoRA. ``gate_weighting="selection"`` (the
default) does exactly that: a selected expert runs at full strength (gate value 1), and the gate
passes the gradient of its renormalised probability straight through (value 1 + p̃ − sg(p̃)), so the
router learns from the task loss as in Switch / Mixtral routing, and k = N is plain LoRA.
``"probability"`` scales each selected expert by p̃ itself (Switch / Mixtral style; what adapters
saved before this option existed use, and what their files load as).

Balance loss (Switch style), per layer ``N_l · Σ_i f_i · p̂_i`` with f_i the share of the batch's
prompts whose top-1 expert is i and p̂_i the mean router probability of i; `auxiliary_loss` is λ
times its sum over layers (λ = ``balance_loss_weight``, 1e-2 as the paper).

Parameters (closed form): each expert r·(d_in + d_out); each layer's router
d·[pooler = self_attention] + 12·[activation = rational] + d·N_l, d the hidden size.
Not mergeable: the selection differs per request (`merge` raises TypeError).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nagner.peft.config import AdapterConfig, register_method
from nagner.peft.layer import AdaptedLayer
from nagner.peft.prompt import (
    PromptAdapter,
    PromptConditionedExtras,
    PromptPooler,
    broadcast_rows,
    check_prompt_options,
    group_by_layer,
    make_activation,
    model_hidden_size,
)

# Every linear of a transformer block: BERT (6), Llama family (7), T5 (self- and cross-attention, FFN).
logger = logging.getLogger(__name__)
GATE_WEIGHTINGS = ("selection", "probability")
MILORA_TARGETS = (
    r".*\.(?:attention\.self\.(?:query|key|value)|attention\.output\.dense"
    r"|intermediate\.dense|layer\.\d+\.output\.dense"
    r"|self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj"
    r"|(?:SelfAttention|EncDecAttention)\.[qkvo]|DenseReluDense\.w[io](?:_[01])?)"
)


@register_method
@dataclass
class MiLoraConfig(AdapterConfig):
    """MiLoRA. ``target_modules`` defaults to every linear of the transformer blocks of BERT,
    Llama-family and T5 models (the paper: Q, K, V, O, gate, up, down); each must sit in a numbered
    layer (``layers_pattern`` picks the number).

    Args:
        r, lora_alpha, lora_dropout: each expert's LoRA (scaling α/r; the paper uses r = 32).
        top_k: experts per prompt and layer (capped at the layer's experts; the paper: 3).
        pooler: ``self_attention`` (the paper's default), ``mean``, ``max`` or ``last``.
        activation: ``rational`` (learnable, starts as GELU) or ``gelu``.
        balance_loss_weight: λ of the load-balancing loss (0 turns it off).
        gate_weighting: ``selection`` (selected experts at full strength, router gradient straight
            through; k = N is LoRA) or ``probability`` (scaled by the renormalised probability).
        bilevel_learning_rate: the learning rate of the rational activations' coefficients Θ,
            trained on held-out data when training has a validation batch (the paper: 1e-6).
    """

    method = "milora"
    peft_type = "MILORA"
    target_modules: list[str] | str | None = MILORA_TARGETS
    r: int = 8
    lora_alpha: float = 8
    lora_dropout: float = 0.0
    top_k: int = 3
    pooler: str = "self_attention"
    activation: str = "rational"
    balance_loss_weight: float = 1e-2
    gate_weighting: str = "selection"
    bilevel_learning_rate: float = 1e-6

    def __post_init__(self) -> None:
        if self.gate_weighting not in GATE_WEIGHTINGS:
            raise ValueError(f"gate_weighting must be one of {', '.join(GATE_WEIGHTINGS)}, got {self.gate_weighting!r}")
        if self.r < 1:
            raise ValueError(f"r must be >= 1, got {self.r}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        check_prompt_options(self.pooler, self.activation)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "adapter config") -> MiLoraConfig:
        """As `AdapterConfig.from_dict`; a file without ``gate_weighting`` was written before the
        option existed, when experts were weighted by their probabilities."""
        return super().from_dict({"gate_weighting": "probability", **values}, source=source)

    def build_adapter(self, layer: AdaptedLayer, module_name: str) -> MiLoraExpert:
        return MiLoraExpert(layer.in_features, layer.out_features, self)

    def training_callbacks(self, context: Any, name: str) -> list[Any]:
        """The paper's bi-level optimisation: Θ (the rational activations) on the validation batch,
        one step after each optimizer step (`nagner.peft.bilevel`). Without a validation batch, or
        with ``activation="gelu"`` (no Θ), none: Θ then trains with the rest on the training data."""
        if self.activation != "rational":
            return []
        if context.validation_batch is None:
            logger.warning("MiLoRA: no validation batch, so the rational activations train on the training data")
            return []
        from nagner.peft.bilevel import BilevelCallback  # stands on transformers' Trainer
        from nagner.peft.procedures import per_example_loss

        callback = BilevelCallback(
            context.adapted_module, context.validation_batch, context.loss_fn or per_example_loss,
            self.bilevel_learning_rate, name,
        )
        return [callback]

    def build_extras(self, model: nn.Module, layers: dict[str, AdaptedLayer]) -> MiLoraRouting:
        groups = group_by_layer(list(layers), self.layers_pattern)
        return MiLoraRouting(groups, next(iter(layers.values())), model_hidden_size(model), self)


class MiLoraExpert(PromptAdapter):
    """One expert: a LoRA pair (``lora_A`` (r, d_in), ``lora_B`` (d_out, r); Kaiming A, zero B, so
    attaching changes no output bit) whose output is scaled per sample by its router gate."""

    def __init__(self, d_in: int, d_out: int, config: MiLoraConfig):
        super().__init__()
        self.r = config.r
        self.scaling = config.lora_alpha / config.r
        self.lora_dropout = nn.Dropout(config.lora_dropout) if config.lora_dropout > 0 else nn.Identity()
        self.lora_A = nn.Linear(d_in, config.r, bias=False)
        self.lora_B = nn.Linear(config.r, d_out, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gate = self.prompt_value(x.shape[0])  # (b,)
        if self.signal.used is not None and self.part not in self.signal.used:
            return y  # no prompt of this batch picked this expert
        rows = gate.detach().ne(0)  # (b,): the prompts that selected this expert
        if bool(rows.all()):
            return y + (self._delta(x) * broadcast_rows(gate, y)).to(y.dtype)
        rows = rows.nonzero().squeeze(1)  # (b',)
        delta = self._delta(x.index_select(0, rows)) * broadcast_rows(gate.index_select(0, rows), y)
        return y.index_add(0, rows, delta.to(y.dtype))  # other rows are y unchanged

    def _delta(self, x: torch.Tensor) -> torch.Tensor:
        """s · B A x for rows x (…, d_in) → (…, d_out)."""
        h = self.lora_A(self.lora_dropout(x.to(self.lora_A.weight.dtype)))  # (…, r)
        return self.lora_B(h) * self.scaling

    def extra_repr(self) -> str:
        return f"r={self.r}, scaling={self.scaling:g}, expert={self.part}"


class MiLoraRouter(nn.Module):
    """One layer's router: pooler → activation → linear (no bias) → softmax over the N experts."""

    def __init__(self, hidden: int, experts: int, pooler: str, activation: str):
        super().__init__()
        self.pooler = PromptPooler(pooler, hidden)
        self.activation = make_activation(activation)
        self.gate = nn.Linear(hidden, experts, bias=False)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """hidden (b, n, d), mask (b, n) → router probabilities (b, N)."""
        return self.gate(self.activation(self.pooler(hidden, mask))).softmax(-1)


def top_k_gates(probabilities: torch.Tensor, k: int, weighting: str = "selection") -> torch.Tensor:
    """(b, N) probabilities → (b, N) gates, 0 off the k largest. ``probability``: the k largest
    renormalised to sum to 1 (p̃). ``selection``: 1 on the k largest, with the gradient of p̃
    (1 + p̃ − sg(p̃))."""
    top, index = probabilities.topk(k, dim=-1)  # (b, k)
    weights = top / top.sum(-1, keepdim=True)  # p̃
    if weighting == "selection":
        weights = weights - weights.detach() + 1.0
    return torch.zeros_like(probabilities).scatter(-1, index, weights)


def balance_loss(probabilities: torch.Tensor) -> torch.Tensor:
    """Switch-style load balancing of one layer: N · Σ_i f_i · p̂_i over a batch of prompts.

    probabilities (b, N); f_i = share of the b prompts whose most probable expert is i (no
    gradient), p̂_i = mean probability of expert i. 1 when balanced, N when one expert takes all."""
    experts = probabilities.shape[-1]
    share = nn.functional.one_hot(probabilities.argmax(-1), experts).to(probabilities.dtype).mean(0)  # (N,)
    return experts * (share * probabilities.mean(0)).sum()


class MiLoraRouting(PromptConditionedExtras):
    """The routers (``routers[i]`` for layer ``prefixes[i]``) and the last batch's probabilities
    for the balance loss."""

    def __init__(self, groups: dict[str, list[str]], host: AdaptedLayer, hidden: int, config: MiLoraConfig):
        super().__init__(groups, host)
        self.routers = nn.ModuleList(
            MiLoraRouter(hidden, len(names), config.pooler, config.activation) for names in self.module_names
        )
        self.top_k = [min(config.top_k, len(names)) for names in self.module_names]
        self.gate_weighting = config.gate_weighting
        self.balance_loss_weight = config.balance_loss_weight
        self._probabilities: list[torch.Tensor | None] = [None] * len(self.module_names)

    def compute(self, index: int, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        probabilities = self.routers[index](hidden, mask)  # (b, N)
        gates = top_k_gates(probabilities, self.top_k[index], self.gate_weighting)
        self._probabilities[index] = probabilities
        self.signals[index].used = frozenset(gates.detach().ne(0).any(0).nonzero().flatten().tolist())
        return gates

    def part(self, index: int, position: int) -> int:
        return position

    def auxiliary_loss(self) -> torch.Tensor | None:
        terms = [balance_loss(p) for p in self._probabilities if p is not None]
        if not terms or self.balance_loss_weight == 0:
            return None
        return self.balance_loss_weight * torch.stack(terms).sum()

    def last_gates(self) -> list[torch.Tensor | None]:
        """Each layer's gates (b, N_l) of the current request (None before the first prompt)."""
        return [signal.value for signal in self.signals]
