"""LoRETTA (Yang et al., NAACL 2024): adapters whose matrices are tensor trains (`TTMatrix`).

LoRETTA_rep — LoRA with A (r, d_in) and B (d_out, r) each a TT-matrix (no bias):

    y = W0·x + b + (α/r)·B·A·dropout(x)

  No-op start: the paper subtracts the initial product B0·A0; we instead draw every core at random
  and set B's last core to zero, so B = 0 exactly and the first output equals the host's bit for bit
  (``y + 0``). Training still moves everything: the zero core gets a gradient at once (it is
  multiplied by the other, non-zero cores), the other cores from the next step on — LoRA's B = 0
  trick, one core at a time. Mergeable; `as_lora` contracts the trains, so `export_peft_lora` writes
  a plain `peft` LoRA.

LoRETTA_adp — a bottleneck adapter on the host's OUTPUT (the BERT-family ``output.dense``
placement: target e.g. ``["output.dense"]``, which covers attention and FFN outputs):

    y' = y + s·Up(act(Down(dropout(y))))      Down: d_out → bottleneck, Up: bottleneck → d_out

  Down and Up are TT-matrices with bias; s is a constant or learned (starts at 1). No-op start:
  Up's bias is 0 and its last core is zero (so Up(·) = 0). Non-linear, so not mergeable.

Parameters per TT-matrix: Σ_i r_{i-1}·k_i·r_i (k_i = m_i·n_i, see `nagner.peft.tensor_train`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nagner.peft.adapter import Adapter
from nagner.peft.config import AdapterConfig, register_method
from nagner.peft.layer import AdaptedLayer
from nagner.peft.methods.lora import LoraAdapter, LoraConfig
from nagner.peft.tensor_train import TTMatrix

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


@register_method
@dataclass
class LorettaRepConfig(LoraConfig):
    """LoRETTA_rep: LoRA with tensor-train factors (paper defaults r=8, α=16, dropout 0.05).

    Args:
        r, lora_alpha, lora_dropout, use_rslora, rank_pattern, alpha_pattern: as `LoraConfig`.
        tensor_rank: the inner TT rank of A and B (the paper tries 2, 5, 10, 20).
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
    """LoRA whose ``lora_A`` (d_in → r) and ``lora_B`` (r → d_out) are `TTMatrix` modules."""

    def __init__(self, d_in: int, d_out: int, r: int, alpha: float, config: LorettaRepConfig):
        super().__init__(d_in, d_out, r, alpha, config)  # builds dense lora_A / lora_B, replaced here
        self.lora_A = TTMatrix(d_in, r, config.tensor_rank)
        self.lora_B = TTMatrix(r, d_out, config.tensor_rank)
        self.reset_lora_parameters()

    @torch.no_grad()
    def reset_lora_parameters(self) -> None:
        """Random cores everywhere, then B's last core zero: B = 0, so ΔW = 0 exactly."""
        if not isinstance(self.lora_B, TTMatrix):
            return  # called by LoraAdapter.__init__ before the TT factors replace the dense ones
        self.lora_A.reset_parameters()
        self.lora_B.reset_parameters()
        nn.init.zeros_(self.lora_B.cores[-1])

    def weight_A(self) -> torch.Tensor:
        """A: (r, d_in), contracted from its train."""
        return self.lora_A.full()

    def weight_B(self) -> torch.Tensor:
        """B: (d_out, r), contracted from its train."""
        return self.lora_B.full()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tensor_rank={self.lora_A.ranks[1]}"


@register_method
@dataclass
class LorettaAdpConfig(AdapterConfig):
    """LoRETTA_adp: a tensor-train bottleneck adapter on the host's output.

    Args:
        bottleneck: the adapter's inner width. tensor_rank: inner TT rank of Down and Up.
        non_linearity: "relu", "tanh" or "gelu". scaling: a constant s, or "learned" (starts at 1).
        dropout: dropout on the adapter's input (the host output).
    """

    method = "loretta_adp"
    peft_type = "LORETTA_ADP"
    bottleneck: int = 64
    tensor_rank: int = 5
    non_linearity: str = "relu"
    scaling: float | str = 1.0
    dropout: float = 0.0

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
        return LorettaAdpAdapter(layer.out_features, self)


class LorettaAdpAdapter(Adapter):
    """``y + s·up(act(down(dropout(y))))`` with TT-matrix ``down`` (d → bottleneck) and ``up``
    (bottleneck → d); ``adapter_scaling`` is a parameter only when scaling is "learned"."""

    def __init__(self, d: int, config: LorettaAdpConfig):
        super().__init__()
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.down = TTMatrix(d, config.bottleneck, config.tensor_rank, bias=True)
        self.act = ACTIVATIONS[config.non_linearity]()
        self.up = TTMatrix(config.bottleneck, d, config.tensor_rank, bias=True)
        if config.scaling == "learned":
            self.adapter_scaling: nn.Parameter | float = nn.Parameter(torch.ones(1))
        else:
            self.adapter_scaling = float(config.scaling)
        with torch.no_grad():
            nn.init.zeros_(self.up.cores[-1])  # Up(·) = 0 at the start (its bias is 0 too)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.act(self.down(self.dropout(y.to(self.up.cores[0].dtype))))  # (…, bottleneck)
        return y + (self.adapter_scaling * self.up(h)).to(y.dtype)  # (…, d)
