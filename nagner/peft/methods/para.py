"""PARA (Liu et al., EMNLP 2024 Industry Track, arXiv 2502.01033): a per-layer vector generator
turns the prompt into element-wise scalings of the attention query / value and FFN-up outputs.

    p = pool(H^l)                                       H^l (b, n, d): the prompt entering layer l
    v = 1 + W_up · act(W_down · p + b_down) + b_up      (b, D_l), D_l = Σ d_out of the layer's targets
    y_m = (W_m x + b_m) ⊙ v[:, slice_m]                 for each target m of layer l

W_up and b_up start at zero, so v = 1 exactly and attaching changes no output bit; weight decay
pulls towards the base model. The vectors are computed once per prompt and per sample
(`nagner.peft.prompt`), so with a KV cache the cached keys / values already carry them and a decode
step costs one element-wise product per target. (Only the paper's abstract was available: the
pooler and activation follow its sibling MiLoRA; sizes and init are our choice.)

Parameters per layer (closed form): d·[pooler = self_attention] + 12·[activation = rational]
+ (d·r + r) + (r·D_l + D_l), d the hidden size. Not mergeable into shared weights (`merge` raises
TypeError): the scalings differ per request.
"""

from __future__ import annotations

from dataclasses import dataclass

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

# Query, value and FFN up projection of BERT (query, value, intermediate.dense), the Llama family
# (q_proj, v_proj, up_proj) and T5 (self-attention q, v; wi, or wi_1 of gated FFNs).
PARA_TARGETS = (
    r".*\.(?:attention\.self\.(?:query|value)|intermediate\.dense"
    r"|self_attn\.[qv]_proj|mlp\.up_proj"
    r"|SelfAttention\.[qv]|DenseReluDense\.wi(?:_1)?)"
)


@register_method
@dataclass
class ParaConfig(AdapterConfig):
    """PARA. ``target_modules`` defaults to the query, value and FFN-up projections of BERT,
    Llama-family and T5 models; each must sit in a numbered layer.

    Args:
        r: the generator's bottleneck width.
        pooler: ``self_attention``, ``mean``, ``max`` or ``last``.
        activation: ``rational`` (learnable, starts as GELU) or ``gelu``.
    """

    method = "para"
    peft_type = "PARA"
    target_modules: list[str] | str | None = PARA_TARGETS
    r: int = 8
    pooler: str = "self_attention"
    activation: str = "rational"

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"r must be >= 1, got {self.r}")
        check_prompt_options(self.pooler, self.activation)

    def build_adapter(self, layer: AdaptedLayer, module_name: str) -> ParaScaling:
        return ParaScaling()

    def build_extras(self, model: nn.Module, layers: dict[str, AdaptedLayer]) -> ParaGenerators:
        groups = group_by_layer(list(layers), self.layers_pattern)
        widths = {name: layer.out_features for name, layer in layers.items()}
        return ParaGenerators(groups, widths, next(iter(layers.values())), model_hidden_size(model), self)


class ParaScaling(PromptAdapter):
    """Multiplies the host output by this module's slice of its layer's generated vector; no
    parameters of its own (they live in the layer's generator)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        vector = self.prompt_value(y.shape[0])  # (b, d_out)
        return y * broadcast_rows(vector, y)


class ParaGenerator(nn.Module):
    """One layer's vector generator: pooler → down (d → r) → activation → up (r → D), plus 1."""

    def __init__(self, hidden: int, r: int, width: int, pooler: str, activation: str):
        super().__init__()
        self.pooler = PromptPooler(pooler, hidden)
        self.down = nn.Linear(hidden, r)
        self.activation = make_activation(activation)
        self.up = nn.Linear(r, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """hidden (b, n, d), mask (b, n) → vectors (b, D), all ones at initialisation."""
        return 1 + self.up(self.activation(self.down(self.pooler(hidden, mask))))


class ParaGenerators(PromptConditionedExtras):
    """The generators (``generators[i]`` for layer ``prefixes[i]``); module j of layer i reads
    ``slices[i][j]`` of its layer's vector."""

    def __init__(
        self,
        groups: dict[str, list[str]],
        widths: dict[str, int],
        host: AdaptedLayer,
        hidden: int,
        config: ParaConfig,
    ):
        super().__init__(groups, host)
        self.slices: list[list[slice]] = []
        for names in self.module_names:
            ends = torch.tensor([widths[n] for n in names]).cumsum(0).tolist()
            self.slices.append([slice(end - widths[n], end) for n, end in zip(names, ends)])
        self.generators = nn.ModuleList(
            ParaGenerator(hidden, config.r, parts[-1].stop, config.pooler, config.activation)
            for parts in self.slices
        )

    def compute(self, index: int, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.generators[index](hidden, mask)

    def part(self, index: int, position: int) -> slice:
        return self.slices[index][position]
