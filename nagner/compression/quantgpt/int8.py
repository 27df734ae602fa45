"""Real int8 CPU inference for a (quantized or not) model: dynamic int8 linear layers from PyTorch's
own quantization (`torch.ao.quantization.quantize_dynamic`, fbgemm/qnnpack kernels: int8 weights,
per-batch int8 activations). PyTorch is moving this API to torchao; it still ships in the pinned
torch, needs no extra dependency, and is tested here. GPT-2's `Conv1D` layers become `nn.Linear`
first, so they are quantized too. Embeddings stay in float (they are a lookup).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def conv1d_as_linear(model: nn.Module) -> nn.Module:
    """Replace every GPT-2 `Conv1D` (weight [in, out]) by the equal `nn.Linear`, in place."""
    for name, module in list(model.named_modules()):
        if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
            linear = nn.Linear(module.weight.shape[0], module.nf)
            with torch.no_grad():
                linear.weight.copy_(module.weight.T)
                linear.bias.copy_(module.bias)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, linear)
    return model


def dynamic_int8(model: nn.Module) -> nn.Module:
    """An int8 copy of ``model`` for CPU inference (``model`` is unchanged)."""
    from torch.ao.quantization import quantize_dynamic

    converted = conv1d_as_linear(copy.deepcopy(model)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the API's deprecation notice: documented above
        return quantize_dynamic(converted, {nn.Linear}, dtype=torch.qint8)
