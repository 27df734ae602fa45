"""SIMPLE's motivation, measured: does the residual stream hold *persistent* outlier dimensions —
hidden dimensions whose activations are the largest whatever the input?

For every layer output of the model (`ModelStructure.layer_outputs`), over every real token of
every input: the largest |activation| of each hidden dimension, and, per input, which dimension is
the largest. A dimension is a persistent outlier when it is the per-input argmax for most inputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch import nn

from nagner.compression.language_modeling import Batch, captured_outputs


@torch.no_grad()
def hidden_outliers(model: nn.Module, batches: Sequence[Batch], layer_outputs: Sequence[str], top: int = 3) -> list[dict]:
    """Per layer output: the ``top`` dimensions by max |activation| (with their max), the ratio of the
    largest max to the median dimension's, and the share of inputs whose own largest dimension is
    the overall top one."""
    model.eval()
    maxima = {name: None for name in layer_outputs}
    winners = {name: Counter() for name in layer_outputs}
    inputs = 0
    with captured_outputs(model, layer_outputs) as outputs:
        for batch in batches:
            model(**batch)
            mask = batch["attention_mask"].bool()
            if mask.shape[1] != next(iter(outputs.values())).shape[1]:  # decoder outputs: label mask
                mask = batch["labels"] != -100
            inputs += len(mask)
            for name in layer_outputs:
                values = outputs[name].abs().masked_fill(~mask[..., None], 0.0)  # [B, T, D]
                per_input = values.amax(dim=1)  # [B, D]
                winners[name].update(per_input.argmax(dim=-1).tolist())
                batch_max = per_input.amax(dim=0)
                maxima[name] = batch_max if maxima[name] is None else torch.maximum(maxima[name], batch_max)
    report = []
    for name in layer_outputs:
        values = maxima[name]
        order = torch.argsort(values, descending=True)[:top].tolist()
        report.append({
            "layer": name,
            "top_dimensions": order,
            "top_max": [round(float(values[d]), 3) for d in order],
            "max_over_median": float(values[order[0]] / values.median().clamp(min=1e-12)),
            "top_is_input_argmax": winners[name][order[0]] / max(inputs, 1),
        })
    return report
