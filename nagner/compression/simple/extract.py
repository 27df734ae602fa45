"""Extraction: the masked model, folded and sliced into a dense, smaller model of the same class with
a standard transformers config (`save_pretrained` / `from_pretrained` work unchanged).

Folding: a kept mask value becomes part of the weights (head and neuron masks scale the input
columns of the output projections; the hidden mask scales the rows of every module writing the
residual stream and the LayerNorms' weight and bias). Slicing: every dimension in a pruned space
keeps the `PrunePlan`'s indices. Tested: the extracted model's logits equal the masked model's.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from nagner.compression.simple.masks import StructureMasks
from nagner.compression.simple.plan import PrunePlan, PruneSizes, parameter_spaces
from nagner.compression.simple.structure import HIDDEN, ModelStructure


def space_indices(structure: ModelStructure, plan: PrunePlan, space: str) -> torch.Tensor:
    """The kept dimensions of ``space`` (heads expand to their dimensions; GPT-2's fused qkv keeps
    the same heads in each of its three parts)."""
    kind, _, key = space.partition(":")
    if kind == HIDDEN:
        return torch.tensor(plan.hidden, dtype=torch.long)
    if kind == "ffn":
        return torch.tensor(plan.ffn[key], dtype=torch.long)
    d = structure.head_dim
    heads = torch.tensor(plan.heads[key], dtype=torch.long)
    dims = (heads[:, None] * d + torch.arange(d)).flatten()  # [kept heads × head_dim]
    if kind == "heads":
        return dims
    width = structure.heads[key] * d
    return torch.cat([dims + part * width for part in range(3)])


def _folded_state(model: nn.Module, structure: ModelStructure, masks: StructureMasks | None) -> dict[str, torch.Tensor]:
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    if masks is None:
        return state
    hidden = masks[HIDDEN].detach()
    for module in structure.modules:
        weight, bias = f"{module.name}.weight", f"{module.name}.bias"
        if module.kind == "norm":
            state[weight] *= hidden
            state[bias] *= hidden
            continue
        if module.kind == "embedding":
            continue  # embeddings are multiplied by (mask != 0): slicing does it
        rows_last = module.kind == "conv1d"  # Conv1D stores [in, out]
        if module.output == HIDDEN:
            state[weight] *= hidden if rows_last else hidden[:, None]
            if bias in state:
                state[bias] *= hidden
        if module.input is not None and module.input != HIDDEN:
            scale = masks.expanded(module.input).detach()
            state[weight] *= scale[:, None] if rows_last else scale
    return state


def pruned_config(model: nn.Module, structure: ModelStructure, sizes: PruneSizes):
    """A copy of ``model.config`` at ``sizes`` (both halves of an encoder-decoder)."""
    config = copy.deepcopy(model.config)
    parts = [config.encoder, config.decoder] if getattr(config, "is_encoder_decoder", False) and hasattr(config, "encoder") else [config]
    for part in parts:
        if structure.family == "gpt2":
            part.n_embd, part.n_head, part.n_inner = sizes.hidden, sizes.heads, sizes.ffn
        else:
            part.hidden_size, part.num_attention_heads, part.intermediate_size = sizes.hidden, sizes.heads, sizes.ffn
    return config


def extract_pruned(
    model: nn.Module, structure: ModelStructure, plan: PrunePlan, masks: StructureMasks | None = None
) -> nn.Module:
    """A new model of ``model``'s class at ``plan.sizes``, holding the kept (and, with ``masks``,
    mask-folded) weights. ``model`` is left unchanged."""
    state = _folded_state(model, structure, masks)
    spaces = parameter_spaces(model, structure)
    for name, axes in spaces.items():
        tensor = state[name]
        for axis, space in enumerate(axes):
            if space is not None:
                tensor = tensor.index_select(axis, space_indices(structure, plan, space))
        state[name] = tensor.contiguous()
    config = pruned_config(model, structure, plan.sizes)
    pruned = type(model)(config)
    pruned.load_state_dict(state, strict=True)
    if hasattr(model, "generation_config") and model.generation_config is not None:
        pruned.generation_config = copy.deepcopy(model.generation_config)
    return pruned.to(next(model.parameters()).dtype).train(model.training)
