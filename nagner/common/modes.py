"""Running a block of code with a module in eval mode, without paying for it when it already is."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``model`` in eval mode; a model that was training is put back in
    training mode afterwards (as ``model.train(was_training)`` would).

    The switch follows ``model.training`` (the flag `nn.Module.eval` and `train` set on every
    module): a model already in eval mode is not switched at all. `nn.Module.train` visits every
    submodule (a MiniLM with LoRA on its linear layers has about 400), twice per call, which cost
    more than tokenizing the sentence when predicting one sentence at a time.
    """
    was_training = model.training
    if was_training:
        model.eval()
    try:
        yield model
    finally:
        if was_training:
            model.train(True)
