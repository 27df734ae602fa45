"""Putting WID's compactors into a BERT-family encoder (``embeddings``, ``encoder.layer[i]`` with
``attention.self.{query,key,value}``, ``attention.output``, ``intermediate``, ``output``, an
optional ``pooler``), in place, and the plan that the schedule and the conversion read.

Masks: ``hidden`` is shared by the embeddings, every LayerNorm, the inputs of Q, K, V, the FFN and
the pooler, and the outputs of the attention output, the FFN output and the pooler (the residual
stream); ``attention.{l}`` by layer l's Q, K, V outputs and attention-output input; ``ffn.{l}`` by its
FFN input's output and FFN output's input. Each is ranked by the norms of one row compactor, as
the official code: layer 0's value input for ``hidden``, the attention output's input for
``attention.{l}``, the FFN output's input for ``ffn.{l}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nagner.compression.wid.compactors import CompactedEmbedding, CompactedLinear, MaskedLayerNorm, WidMasks
from nagner.compression.wid.config import WidConfig


@dataclass
class WidPlan:
    """What `attach_compactors` installed: the masks, the embedding compactor, every compacted
    linear by its module name, and the row compactor that ranks each mask."""

    config: WidConfig
    masks: WidMasks
    embedding_compactor: nn.Parameter
    linears: dict[str, CompactedLinear]
    rankers: dict[str, CompactedLinear]  # mask name → the compactor whose row norms rank it
    head_size: int
    hidden_size: int
    intermediate_size: int

    def compactor_parameters(self) -> list[nn.Parameter]:
        """Every compactor (the official optimizer trains these at its own learning rate)."""
        return [self.embedding_compactor, *(p for linear in self.linears.values() for p in (linear.row, linear.column))]


def attach_compactors(model: nn.Module, config: WidConfig) -> WidPlan:
    """Install compactors into ``model`` in place (outputs unchanged: every compactor is the
    identity) and return the plan. ValueError for targets the model cannot take."""
    cfg = model.config
    hidden, intermediate, heads = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads
    head_size = hidden // heads
    _check_targets(config, hidden, intermediate, heads, head_size)
    layers = model.encoder.layer
    sizes = {"hidden": hidden}
    for index in range(len(layers)):
        sizes[f"attention.{index}"] = hidden
        sizes[f"ffn.{index}"] = intermediate
    masks = WidMasks(sizes)
    model.add_module("wid_masks", masks)
    weight = model.embeddings.word_embeddings.weight
    column = nn.Parameter(torch.eye(hidden, dtype=weight.dtype, device=weight.device))
    model.embeddings.register_parameter("wid_compactor", column)
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        if getattr(model.embeddings, name, None) is not None:
            setattr(model.embeddings, name, CompactedEmbedding(getattr(model.embeddings, name), column, masks))
    linears: dict[str, CompactedLinear] = {}

    def compact(parent: nn.Module, attribute: str, path: str, in_mask: str, out_mask: str) -> CompactedLinear:
        linear = CompactedLinear(getattr(parent, attribute), in_mask, out_mask, masks)
        setattr(parent, attribute, linear)
        linears[path] = linear
        return linear

    rankers: dict[str, CompactedLinear] = {}
    for index, layer in enumerate(layers):
        prefix, attention, ffn = f"encoder.layer.{index}", f"attention.{index}", f"ffn.{index}"
        for part in ("query", "key", "value"):
            compact(layer.attention.self, part, f"{prefix}.attention.self.{part}", "hidden", attention)
        rankers[attention] = compact(layer.attention.output, "dense", f"{prefix}.attention.output.dense", attention, "hidden")
        compact(layer.intermediate, "dense", f"{prefix}.intermediate.dense", "hidden", ffn)
        rankers[ffn] = compact(layer.output, "dense", f"{prefix}.output.dense", ffn, "hidden")
    rankers["hidden"] = linears["encoder.layer.0.attention.self.value"]
    if getattr(model, "pooler", None) is not None:
        compact(model.pooler, "dense", "pooler.dense", "hidden", "hidden")
    _mask_layer_norms(model, masks)
    return WidPlan(config, masks, column, linears, rankers, head_size, hidden, intermediate)


def _mask_layer_norms(model: nn.Module, masks: WidMasks) -> None:
    """Every LayerNorm of the residual stream becomes a `MaskedLayerNorm`."""
    holders = [model.embeddings]
    for layer in model.encoder.layer:
        holders += [layer.attention.output, layer.output]
    for holder in holders:
        holder.LayerNorm = MaskedLayerNorm(holder.LayerNorm, masks)


def _check_targets(config: WidConfig, hidden: int, intermediate: int, heads: int, head_size: int) -> None:
    if not 0 < config.target_hidden <= hidden or not 0 < config.target_intermediate <= intermediate:
        raise ValueError(
            f"targets {config.target_hidden} / {config.target_intermediate} must lie in (0, {hidden}] / (0, {intermediate}]"
        )
    unit = heads if config.strategy == "dim" else head_size  # dims per head kept, or whole heads
    if config.target_hidden % unit:
        what = f"a multiple of the {heads} heads" if config.strategy == "dim" else f"a multiple of the head size {head_size}"
        raise ValueError(f"target_hidden {config.target_hidden} must be {what} (strategy {config.strategy!r})")
