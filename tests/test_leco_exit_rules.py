"""LECO's exit rules on hand-made exit sequences: where each rule stops and what it answers."""

from __future__ import annotations

import math

import pytest
import torch

from nagner.compression.leco import (
    ComparisonRule,
    EntropyRule,
    MaxProbabilityRule,
    PatienceRule,
    decide,
)


def exits(*rows: list[float]) -> torch.Tensor:
    """One input's exit probabilities (L, C)."""
    return torch.tensor(rows)


# five exits, three classes: the argmax goes 0, 1, 0, 0, 0
WAVERING = exits([0.5, 0.3, 0.2], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.8, 0.1, 0.1], [0.9, 0.05, 0.05])
# the argmax goes 2, 1, 2, 1, 2: no two exits in a row agree
ALTERNATING = exits([0.1, 0.4, 0.5], [0.1, 0.5, 0.4], [0.1, 0.4, 0.5], [0.1, 0.5, 0.4], [0.2, 0.3, 0.5])


@pytest.mark.parametrize(
    ("rule", "sequence", "layer", "answer"),
    [
        (MaxProbabilityRule(0.75), WAVERING, 4, 0),  # 0.5, 0.7, 0.6 < 0.75 ≤ 0.8
        (MaxProbabilityRule(0.95), WAVERING, 5, 0),  # never: the last exit answers
        (PatienceRule(1), WAVERING, 4, 0),  # exits 3 and 4 agree
        (PatienceRule(2), WAVERING, 5, 0),  # 3, 4, 5 agree: two repeats after exit 3
        (PatienceRule(1), ALTERNATING, 5, 2),  # never two in a row
        (ComparisonRule(2), WAVERING, 3, 0),  # exit 3 is the second vote for 0 (exits 1 and 3)
        (ComparisonRule(3), WAVERING, 4, 0),
        (ComparisonRule(2), ALTERNATING, 3, 2),  # not consecutive, still two votes for class 2
        (ComparisonRule(3), ALTERNATING, 5, 2),
    ],
)
def test_where_each_rule_exits(rule, sequence, layer, answer):
    layers, predictions = decide(rule, sequence[None])
    assert (int(layers[0]), int(predictions[0])) == (layer, answer)


def test_entropy_is_normalised_by_log_classes():
    rule = EntropyRule(0.5)
    uniform = torch.full((3,), 1 / 3)
    assert rule.step(uniform) is None  # normalised entropy 1
    peaked = torch.tensor([0.9, 0.05, 0.05])
    entropy = -(0.9 * math.log(0.9) + 2 * 0.05 * math.log(0.05)) / math.log(3)  # 0.36
    assert entropy < 0.5 and rule.step(peaked) == 0
    assert EntropyRule(entropy - 1e-3).step(peaked) is None


def test_decide_runs_every_input_from_a_fresh_state():
    layers, predictions = decide(ComparisonRule(2), torch.stack([ALTERNATING, WAVERING]))
    assert layers.tolist() == [3, 3] and predictions.tolist() == [2, 0]


def test_comparison_fires_no_later_than_patience_at_the_same_count():
    """Agreeing exits counted over all earlier exits are a superset of consecutive ones: with
    threshold k + 1 COBEE never exits later than PABEE with patience k."""
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.randn(200, 6, 4, generator=generator).softmax(-1)
    for k in (1, 2, 3):
        cobee, _ = decide(ComparisonRule(k + 1), probabilities)
        pabee, _ = decide(PatienceRule(k), probabilities)
        assert (cobee <= pabee).all()


def test_bad_settings_raise():
    with pytest.raises(ValueError):
        PatienceRule(0)
    with pytest.raises(ValueError):
        ComparisonRule(0)
