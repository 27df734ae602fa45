"""Stopping an encoder's forward pass after a layer: forward hooks on its layer blocks call
``on_layer``; the first non-None answer abandons the pass, so the layers after it never run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


class _Stopped(Exception):
    def __init__(self, layer: int, answer: Any):
        self.layer, self.answer = layer, answer


def run_until_exit(
    forward: Callable[[], Any], blocks: Sequence[nn.Module], on_layer: Callable[[int, torch.Tensor], Any]
) -> tuple[Any, int]:
    """Call ``forward()`` with ``on_layer(index, hidden)`` (0-based index, the block's output
    states) after each of ``blocks``; returns (the first non-None answer, its 1-based layer).
    ``on_layer`` must answer at the last block."""

    def hook(index: int):
        def run(module: nn.Module, args: tuple, output: Any) -> None:
            answer = on_layer(index, output[0] if isinstance(output, tuple) else output)
            if answer is not None:
                raise _Stopped(index + 1, answer)

        return run

    handles = [block.register_forward_hook(hook(i)) for i, block in enumerate(blocks)]
    try:
        forward()
    except _Stopped as stopped:
        return stopped.answer, stopped.layer
    finally:
        for handle in handles:
            handle.remove()
    raise RuntimeError("the encoder ran no layer, or on_layer gave no answer at the last one")
