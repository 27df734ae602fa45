"""What to keep: sizes (one hidden size, one head count and one FFN width for every layer) and the
kept indices of every group, chosen by scores (SIMPLE's learned masks, or a baseline's importance).

Why uniform sizes: the extracted model must be a standard transformers BERT / GPT-2 that
`from_pretrained` loads without custom code. Those configs have one ``num_attention_heads`` and one
``intermediate_size`` for all layers, and tie the head size to ``hidden_size / num_attention_heads``
(transformers 5 dropped per-layer ``pruned_heads``). So every layer keeps the same number of heads
and neurons (its own best ones), and a model pruned to hidden size ``h`` keeps ``h / head_dim`` heads
per attention block, head size unchanged.

Why balanced sizes, not SIMPLE's global threshold: one threshold over all masks compares hidden,
head and FFN masks as if their values were on one scale, and they are not. On the agent's core model
(bench/compress_agent.py, 48 %) it kept hidden size 288 and **one** FFN neuron per layer, and the
held-out loss went from 3.33 to 4.63. So `sizes_for_reduction` keeps about the same share of the
hidden size and of the FFN width (the parameter target met within 1 %), and the masks choose which
dimensions, heads and neurons fill those sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nagner.compression.simple.structure import HIDDEN, ModelStructure


@dataclass(frozen=True)
class PruneSizes:
    """The pruned model's shape: hidden size, heads per attention block, FFN width per layer."""

    hidden: int
    heads: int
    ffn: int


@dataclass
class PrunePlan:
    """The kept indices (sorted) of every group."""

    sizes: PruneSizes
    hidden: list[int]
    heads: dict[str, list[int]]
    ffn: dict[str, list[int]]

    def kept(self, group: str) -> list[int]:
        if group == HIDDEN:
            return self.hidden
        kind, key = group.split(":", 1)
        return self.heads[key] if kind == "heads" else self.ffn[key]

    def to_dict(self) -> dict:
        return {"sizes": vars(self.sizes), "hidden": self.hidden, "heads": self.heads, "ffn": self.ffn}


def check_sizes(structure: ModelStructure, sizes: PruneSizes) -> None:
    """ValueError unless ``sizes`` fit ``structure`` and make a standard config."""
    if not 0 < sizes.hidden <= structure.hidden_size or sizes.hidden % structure.head_dim:
        raise ValueError(
            f"hidden size {sizes.hidden} must be a positive multiple of the head size {structure.head_dim} "
            f"and at most {structure.hidden_size}"
        )
    if sizes.heads != sizes.hidden // structure.head_dim:
        raise ValueError(f"{sizes.heads} heads do not match hidden size {sizes.hidden} at head size {structure.head_dim}")
    widest = min(structure.ffn.values())
    if not 0 < sizes.ffn <= widest:
        raise ValueError(f"FFN width {sizes.ffn} must be between 1 and {widest}")


def sizes_for(structure: ModelStructure, hidden: int, ffn: int) -> PruneSizes:
    """`PruneSizes` with the head count that ``hidden`` implies."""
    sizes = PruneSizes(hidden, hidden // structure.head_dim, ffn)
    check_sizes(structure, sizes)
    return sizes


def plan_from_scores(structure: ModelStructure, scores: dict[str, torch.Tensor], sizes: PruneSizes) -> PrunePlan:
    """Keep the ``sizes`` highest-scoring entries of every group (ties: the lower index)."""
    check_sizes(structure, sizes)

    def top(group: str, count: int) -> list[int]:
        order = torch.argsort(scores[group].detach().float(), descending=True, stable=True)
        return sorted(order[:count].tolist())

    return PrunePlan(
        sizes,
        top(HIDDEN, sizes.hidden),
        {block: top(f"heads:{block}", sizes.heads) for block in structure.heads},
        {layer: top(f"ffn:{layer}", sizes.ffn) for layer in structure.ffn},
    )


def parameter_spaces(model: nn.Module, structure: ModelStructure) -> dict[str, tuple[str | None, ...]]:
    """Every prunable parameter (by state-dict name) → the space of each of its dimensions."""
    spaces: dict[str, tuple[str | None, ...]] = {}
    for module in structure.modules:
        if module.kind == "linear":
            weight = (module.output, module.input)
        elif module.kind == "conv1d":
            weight = (module.input, module.output)
        elif module.kind == "norm":
            weight = (HIDDEN,)
        else:  # embedding
            weight = (None, HIDDEN)
        spaces[f"{module.name}.weight"] = weight
        bias = (HIDDEN,) if module.kind == "norm" else (module.output,)
        spaces[f"{module.name}.bias"] = bias
    names = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    return {name: value for name, value in spaces.items() if name in names}


def space_width(structure: ModelStructure, space: str, sizes: PruneSizes | None) -> int:
    """Dimensions of ``space`` after pruning to ``sizes`` (None: unpruned)."""
    kind = space.split(":", 1)[0]
    if kind == HIDDEN:
        return sizes.hidden if sizes else structure.hidden_size
    if kind in ("heads", "qkv"):
        heads = sizes.heads if sizes else structure.heads[space.split(":", 1)[1]]
        return heads * structure.head_dim * (3 if kind == "qkv" else 1)
    return sizes.ffn if sizes else structure.ffn[space.split(":", 1)[1]]


def count_parameters(
    model: nn.Module, structure: ModelStructure, sizes: PruneSizes | None = None, *, embeddings: bool = True
) -> int:
    """Parameters of ``model`` pruned to ``sizes`` (None: as it is), each tied tensor once;
    ``embeddings=False`` leaves out every `nn.Embedding` weight."""
    spaces = parameter_spaces(model, structure)
    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    seen: set[int] = set()
    total = 0
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) in seen or (not embeddings and id(parameter) in embedding_weights):
            continue
        seen.add(id(parameter))
        shape = list(parameter.shape)
        for axis, space in enumerate(spaces.get(name, ())):
            if space is not None:
                shape[axis] = space_width(structure, space, sizes)
        total += int(torch.Size(shape).numel())
    return total


def sizes_for_reduction(model: nn.Module, structure: ModelStructure, reduction: float) -> PruneSizes:
    """Balanced sizes removing ``reduction`` of ``model``'s parameters: for every hidden size (a
    multiple of the head size), the FFN width that hits the target; of those within 1 % of it, the
    one whose FFN keeps the share closest to the hidden size's (the closest count if none is)."""
    if not 0 <= reduction < 1:
        raise ValueError(f"reduction must be in [0, 1), got {reduction}")
    full = count_parameters(model, structure)
    target = (1 - reduction) * full
    widest = min(structure.ffn.values())
    candidates = []
    for hidden in range(structure.head_dim, structure.hidden_size + 1, structure.head_dim):
        one = count_parameters(model, structure, sizes_for(structure, hidden, 1))
        slope = count_parameters(model, structure, sizes_for(structure, hidden, 2)) - one
        ffn = min(widest, max(1, round(1 + (target - one) / slope)))
        sizes = sizes_for(structure, hidden, ffn)
        gap = abs(count_parameters(model, structure, sizes) - target) / full
        balance = abs(ffn / widest - hidden / structure.hidden_size)
        candidates.append((gap > 0.01, balance if gap <= 0.01 else gap, sizes))
    return min(candidates, key=lambda c: (c[0], c[1]))[2]
