"""Importance scores of the baselines SIMPLE is compared with, on the same structures (hidden
dimensions, heads, FFN neurons), so every method prunes to the same shapes:

- **magnitude**: the squared L2 norm of every weight a structure owns (the rows it writes and the
  columns it reads, embeddings included for hidden dimensions);
- **loss-aware** (first-order Taylor, Molchanov et al. 2017; Michel et al. 2019 for heads):
  ``Σ_batches |∂L/∂m|`` of a gate ``m = 1`` on each structure, weights frozen;
- **movement** (Sanh et al. 2020, structured): ``-Σ_steps m·∂L/∂m`` accumulated while the weights
  fine-tune, i.e. how far training pushes each structure away from zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from nagner.compression.language_modeling import Batch, cycle, train_steps
from nagner.compression.simple.masks import StructureMasks, masks_attached
from nagner.compression.simple.plan import parameter_spaces
from nagner.compression.simple.structure import HIDDEN, ModelStructure


def _group_of(space: str) -> str:
    kind, _, key = space.partition(":")
    return f"heads:{key}" if kind == "qkv" else space


@torch.no_grad()
def magnitude_scores(model: nn.Module, structure: ModelStructure) -> dict[str, torch.Tensor]:
    """Squared norm of each structure's weights (LayerNorm parameters excluded)."""
    scores = {group: torch.zeros(structure.size(group)) for group in structure.groups()}
    tensors = dict(model.named_parameters(remove_duplicate=False))
    seen: set[int] = set()
    norms = {m.name for m in structure.modules if m.kind == "norm"}
    for name, axes in parameter_spaces(model, structure).items():
        tensor = tensors[name]
        if id(tensor) in seen or name.rsplit(".", 1)[0] in norms:
            continue
        seen.add(id(tensor))
        squared = tensor.detach().float() ** 2
        for axis, space in enumerate(axes):
            if space is None:
                continue
            per_dim = squared.sum(dim=[a for a in range(squared.dim()) if a != axis]) if squared.dim() > 1 else squared
            group = _group_of(space)
            if group == HIDDEN or space.startswith("ffn"):
                scores[group] += per_dim
            else:  # head dimensions (×3 for a fused qkv) → per head
                scores[group] += per_dim.reshape(-1, structure.head_dim).sum(-1).reshape(-1, structure.size(group)).sum(0)
    return scores


def loss_aware_scores(
    model: nn.Module, structure: ModelStructure, batches: Sequence[Batch], loss_of: Callable[[nn.Module, Batch], torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Σ over ``batches`` of |∂loss/∂gate| per structure, weights frozen."""
    gates = StructureMasks(structure)
    scores = {group: torch.zeros(structure.size(group)) for group in structure.groups()}
    requires = [p.requires_grad for p in model.parameters()]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    try:
        with masks_attached(model, gates):
            for batch in batches:
                gates.zero_grad(set_to_none=True)
                loss_of(model, batch).backward()
                for group, gate in gates.items():
                    scores[group] += gate.grad.abs()
    finally:
        for parameter, flag in zip(model.parameters(), requires, strict=True):
            parameter.requires_grad_(flag)
    return scores


def movement_scores(
    model: nn.Module,
    structure: ModelStructure,
    batches: Sequence[Batch],
    loss_of: Callable[[nn.Module, Batch], torch.Tensor],
    *,
    steps: int,
    learning_rate: float,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """-Σ ∂loss/∂gate over ``steps`` fine-tuning steps of ``model``'s weights (``model`` is trained
    in place: callers pass a copy)."""
    gates = StructureMasks(structure)
    scores = {group: torch.zeros(structure.size(group)) for group in structure.groups()}

    def accumulate() -> None:
        for group, gate in gates.items():
            scores[group] -= gate.grad
        gates.zero_grad(set_to_none=True)

    with masks_attached(model, gates):
        stream = cycle(batches, seed)
        train_steps(
            list(model.parameters()),
            [next(stream) for _ in range(steps)],
            lambda batch: loss_of(model, batch),
            steps=steps,
            learning_rate=learning_rate,
            seed=seed,
            after_step=accumulate,
        )
    return scores
