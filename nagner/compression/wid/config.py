"""What WID compresses to, and its schedule."""

from __future__ import annotations

from dataclasses import dataclass

STRATEGIES = ("dim", "head")


@dataclass
class WidConfig:
    """WID's targets and schedule (defaults: the official README's, the schedule scaled down).

    Args:
        target_hidden: the student's hidden size (the residual stream, embeddings and LayerNorms).
        target_intermediate: the student's FFN width.
        strategy: how attention shrinks to ``target_hidden``: ``dim`` keeps every head and the same
            number of dimensions in each (12 × 32 → 12 × 16), ``head`` drops whole heads (12 → 6).
        w_step: optimizer steps between two mask updates.
        increments: mask updates until the targets are reached (the official code: 16).
        l2_lambda: λ of the squeeze on masked rows and columns (official 20).
    """

    target_hidden: int
    target_intermediate: int
    strategy: str = "dim"
    w_step: int = 100
    increments: int = 16
    l2_lambda: float = 20.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.target_hidden < 1 or self.target_intermediate < 1 or self.w_step < 1 or self.increments < 1:
            raise ValueError("target sizes, w_step and increments must be >= 1")
