"""SIMPLE's learnable structured masks, applied to an unchanged transformers model through hooks.

One real-valued mask per group (`ModelStructure.groups`): the hidden mask ``[hidden]`` shared by the
whole model, one ``[num_heads]`` mask per attention block, one ``[ffn]`` mask per feed-forward layer.
All start at 1. With the masks attached:

- a head's output is scaled by its mask before the attention's output projection; an intermediate
  neuron's by its mask before the FFN's output projection;
- every module writing the residual stream (attention and FFN output projections, LayerNorms, the
  LM head's transform) has its output scaled by the hidden mask; embeddings are multiplied by
  ``hidden_mask != 0`` (so a weight tied between the input embedding and the LM head is scaled once,
  at the last LayerNorm, and the masked model folds exactly into a dense one);
- every LayerNorm computes its mean and variance over the hidden dimensions whose mask is non-zero,
  as the extracted, narrower LayerNorm will.

So a mask value of 0 removes the structure exactly, and `extract.extract_pruned` folds the kept
values into the weights: the extracted model computes what the masked model computes.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from nagner.compression.simple.structure import HIDDEN, ModelStructure


def _key(group: str) -> str:
    return group.replace(".", "/")  # ParameterDict keys may not contain dots


class StructureMasks(nn.Module):
    """The masks of every group of ``structure``, each a parameter starting at 1."""

    def __init__(self, structure: ModelStructure):
        super().__init__()
        self.structure = structure
        self.values = nn.ParameterDict(
            {_key(group): nn.Parameter(torch.ones(structure.size(group))) for group in structure.groups()}
        )

    def __getitem__(self, group: str) -> torch.Tensor:
        return self.values[_key(group)]

    def items(self) -> list[tuple[str, torch.Tensor]]:
        return [(group, self[group]) for group in self.structure.groups()]

    def l1(self) -> torch.Tensor:
        """The mean absolute mask value over every entry (SIMPLE's sparsity term, size-normalised)."""
        values = torch.cat([mask.abs() for mask in self.values.values()])
        return values.mean()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Keep masks non-negative after an optimiser step (a negative scale is not a mask)."""
        for mask in self.values.values():
            mask.clamp_(min=0.0)

    @torch.no_grad()
    def keep_only_(self, plan) -> None:
        """Zero every entry the `PrunePlan` drops; kept entries keep their learned values."""
        for group, mask in self.items():
            keep = torch.zeros_like(mask, dtype=torch.bool)
            keep[plan.kept(group)] = True
            mask.mul_(keep)

    def expanded(self, space: str) -> torch.Tensor:
        """The mask of ``space`` at dimension level (a head's value repeated over its dimensions)."""
        kind, _, key = space.partition(":")
        if kind == "heads":
            return self[space].repeat_interleave(self.structure.head_dim)
        return self[space]


def masked_layer_norm(norm: nn.LayerNorm, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``norm`` over the dimensions where ``mask`` is non-zero, then scaled by ``mask``.
    hidden: [..., D]; mask: [D]."""
    keep = (mask != 0).to(hidden.dtype)  # [D]
    count = keep.sum().clamp(min=1.0)
    mean = (hidden * keep).sum(-1, keepdim=True) / count  # [..., 1]
    centred = (hidden - mean) * keep
    variance = (centred * centred).sum(-1, keepdim=True) / count
    normalised = centred / torch.sqrt(variance + norm.eps)
    return (normalised * norm.weight + norm.bias) * mask


@contextmanager
def masks_attached(model: nn.Module, masks: StructureMasks):
    """Apply ``masks`` to ``model`` inside the block (hooks; the model's modules are not replaced)."""
    handles = []
    modules = dict(model.named_modules())
    for spaces in masks.structure.modules:
        module = modules[spaces.name]
        if spaces.kind == "norm":
            handles.append(module.register_forward_hook(_norm_hook(masks)))
            continue
        if spaces.kind == "embedding":
            handles.append(module.register_forward_hook(_keep_hook(masks)))
            continue
        if spaces.input is not None and spaces.input != HIDDEN:
            handles.append(module.register_forward_pre_hook(_input_hook(masks, spaces.input)))
        if spaces.output == HIDDEN:
            handles.append(module.register_forward_hook(_output_hook(masks)))
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


def _norm_hook(masks: StructureMasks):
    def hook(module, inputs, output):
        return masked_layer_norm(module, inputs[0], masks[HIDDEN])

    return hook


def _keep_hook(masks: StructureMasks):
    def hook(module, inputs, output):
        return output * (masks[HIDDEN] != 0).to(output.dtype)

    return hook


def _output_hook(masks: StructureMasks):
    def hook(module, inputs, output):
        return output * masks[HIDDEN]

    return hook


def _input_hook(masks: StructureMasks, space: str):
    def hook(module, inputs):
        return (inputs[0] * masks.expanded(space), *inputs[1:])

    return hook
