"""SoRA (Ding et al., EMNLP 2023): LoRA with a gate vector g between A and B, sparsified by a
proximal L1 step, then pruned to a plain LoRA of smaller per-module rank.

    y = W0·x + b + s · B·(g ⊙ A·dropout(x))        g: (r,) ~ N(0, 1) at init, s = α/r

Training (official recipe): the usual optimizer step on A, B and g, then the proximal operator of
ξ‖g‖₁ on every gate, ``g ← sign(g)·max(|g| − ξ, 0)`` (`sora_proximal_step`, run after each
optimizer step by `SoraCallback`), plus the loss term ``η·Σ|g| / #g`` over all gate entries of
the model (`adapter.SoraPenalty.auxiliary_loss`, added by `AdapterTrainer` or `nagner.peft.auxiliary_loss`).

The official code applies the threshold as three masked updates in a row (``g[g > ξ] -= ξ;
g[g < −ξ] += ξ; g[|g| < ξ] = 0``), so a gate in (ξ, 2ξ) is first shrunk into (0, ξ) and then
zeroed, and a gate of exactly ±ξ stays: it zeroes |g| < 2ξ. That rule is available only as the
compat flag ``official_prox=True``; the default is the exact soft threshold.

Like the official trainer, the L1 term divides by the number of gate entries of the whole model,
so η means the same as the official ``sparse_lambda``.

After training, `prune_sora` drops the ranks whose gate is 0 and folds g into B: the adapter
becomes a plain LoRA with per-module ranks (``rank_pattern``) and the same outputs. Before that,
`as_lora` (merge, export, mixed batches) already drops the zero ranks.
"""

from nagner.peft.methods.sora.adapter import SoraAdapter, SoraPenalty
from nagner.peft.methods.sora.config import SoraConfig
from nagner.peft.methods.sora.sparsity import (
    SparsityReport,
    prune_sora,
    soft_threshold,
    sora_adapters,
    sora_param_groups,
    sora_proximal_step,
    sparsity_report,
)

__all__ = [
    "SoraAdapter",
    "SoraConfig",
    "SoraPenalty",
    "SparsityReport",
    "prune_sora",
    "soft_threshold",
    "sora_adapters",
    "sora_param_groups",
    "sora_proximal_step",
    "sparsity_report",
]
