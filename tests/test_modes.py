"""`evaluating`: eval mode inside the block, the training mode back afterwards, no switching for a
model in eval mode."""

from __future__ import annotations

import pytest
from torch import nn

from nagner.common.modes import evaluating


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.1)))


def modes(model: nn.Module) -> list[bool]:
    return [module.training for module in model.modules()]


def test_a_training_model_is_evaluated_inside_and_trains_again_after_even_on_error():
    model = make_model().train()
    with evaluating(model) as inside:
        assert inside is model and modes(model) == [False] * 5
    assert modes(model) == [True] * 5
    with pytest.raises(RuntimeError), evaluating(model):
        raise RuntimeError("boom")
    assert modes(model) == [True] * 5


def test_a_model_in_eval_mode_is_not_switched(monkeypatch):
    model = make_model().eval()

    def refuse(self, mode=True):
        raise AssertionError("train() called")

    monkeypatch.setattr(nn.Module, "train", refuse)
    with evaluating(model):
        assert modes(model) == [False] * 5
    assert modes(model) == [False] * 5

