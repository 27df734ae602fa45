"""Token-level contrastive distillation (QuantGPT): each token of the quantized student is pulled
towards the full-precision teacher's representation of the *same* token and pushed from the
teacher's representations of other tokens — the other tokens of the batch and a memory bank of
teacher tokens from earlier batches (a FIFO queue; the teacher is frozen, so its entries stay
consistent without a momentum encoder). InfoNCE with cosine similarity and temperature τ:

    ℓ = -1/N Σ_i log( exp(cos(s_i, t_i)/τ) / Σ_{j ∈ batch ∪ bank} exp(cos(s_i, t_j)/τ) )

Representations are the last decoder layer's hidden states (QuantGPT's best layer), without a
projection head (the paper's head, if any, is not published).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_contrastive_loss(
    student: torch.Tensor, teacher: torch.Tensor, bank: torch.Tensor | None = None, temperature: float = 0.1
) -> torch.Tensor:
    """student, teacher: [N, D] (row i is token i in both); bank: [M, D] extra teacher negatives."""
    keys = teacher if bank is None or len(bank) == 0 else torch.cat([teacher, bank])
    similarity = F.normalize(student, dim=-1) @ F.normalize(keys, dim=-1).T / temperature  # [N, N + M]
    return F.cross_entropy(similarity, torch.arange(len(student), device=student.device))


class TeacherMemoryBank:
    """A FIFO queue of at most ``size`` teacher token representations (detached)."""

    def __init__(self, size: int):
        self.size = size
        self.entries: torch.Tensor | None = None

    def negatives(self) -> torch.Tensor | None:
        return self.entries

    def push(self, representations: torch.Tensor) -> None:
        if self.size <= 0:
            return
        fresh = representations.detach()
        self.entries = fresh if self.entries is None else torch.cat([fresh, self.entries])
        self.entries = self.entries[: self.size]
