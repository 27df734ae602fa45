"""Folding WID's compactors into the teacher's weights: a dense, narrower student that loads with
``AutoModel.from_pretrained`` and needs no code of ours.

For a compacted linear (teacher y = ((x·R)·Wᵀ + b)·K) with kept inputs D and kept outputs E, the
student's weight is (R[D, :]·Wᵀ·K[:, E])ᵀ and its bias b·K[:, E]; embedding tables become
T·E[:, hidden]; LayerNorm γ and β keep the hidden dimensions. With the ``dim`` strategy the heads get
narrower (d → d'), and the student scales attention scores by 1/√d' where the teacher used 1/√d, so
the query weight and bias are multiplied by √(d'/d). The student then computes exactly what the
compacted teacher computes in hard-mask mode (`tests/test_wid.py` checks it to 1e-5).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from transformers import AutoModel

from nagner.compression.wid.compactors import MaskedLayerNorm
from nagner.compression.wid.plan import WidPlan


@torch.no_grad()
def convert_to_student(model: nn.Module, plan: WidPlan) -> nn.Module:
    """The dense student of a compacted ``model`` at its current masks (a new model of the same
    class, with hidden size, heads and FFN width from the kept dimensions)."""
    keep_hidden = plan.masks.keep("hidden")
    hidden = int(keep_hidden.sum())
    attention = int(plan.masks.keep("attention.0").sum())
    intermediate = int(plan.masks.keep("ffn.0").sum())
    heads = model.config.num_attention_heads
    if plan.config.strategy == "head":
        heads = attention // plan.head_size
    if attention != hidden:
        raise ValueError(f"the attention masks keep {attention} dimensions but the hidden mask {hidden}: not a BERT shape")
    config = copy.deepcopy(model.config)
    config.hidden_size, config.num_attention_heads, config.intermediate_size = hidden, heads, intermediate
    student = AutoModel.from_config(config).eval()
    if getattr(model, "pooler", None) is None:
        student.pooler = None
    query_scale = math.sqrt((hidden // heads) / plan.head_size)

    embeddings = model.embeddings
    column = plan.embedding_compactor[:, keep_hidden]  # (H, H')
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        table = getattr(embeddings, name, None)
        if table is not None:
            getattr(student.embeddings, name).weight.copy_(table.teacher.weight @ column)
    for path, linear in plan.linears.items():
        target = student.get_submodule(path)
        keep_in, keep_out = plan.masks.keep(linear.in_mask), plan.masks.keep(linear.out_mask)
        row, col = linear.row[keep_in, :], linear.column[:, keep_out]  # (D, in), (out, E)
        weight = (row @ linear.teacher.weight.T @ col).T  # (E, D)
        bias = linear.teacher.bias @ col if linear.teacher.bias is not None else None
        if path.endswith("attention.self.query"):
            weight, bias = weight * query_scale, (bias * query_scale if bias is not None else None)
        target.weight.copy_(weight)
        if bias is not None:
            target.bias.copy_(bias)
    for name, module in model.named_modules():
        if isinstance(module, MaskedLayerNorm):
            target = student.get_submodule(name)
            target.weight.copy_(module.teacher.weight[keep_hidden])
            target.bias.copy_(module.teacher.bias[keep_hidden])
    return student
