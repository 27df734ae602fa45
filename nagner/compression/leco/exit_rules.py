"""When a multi-exit model may stop: exit rules over the class probabilities of the exits passed so
far, for one input at a time (``step`` after each layer, as inference runs) or for recorded outputs
of every exit (`decide`, to sweep thresholds on the same weights).

* `MaxProbabilityRule` (Shallow-Deep Nets): exit once the largest probability is ≥ τ.
* `EntropyRule` (DeeBERT; normalised as PCEE-BERT): exit once H(p) / log C < τ.
* `PatienceRule` (PABEE): exit once the argmax has stayed the same for ``patience`` exits in a row
  after the first (the HF PABEE example's counter).
* `ComparisonRule` (COBEE, LECO): the prediction of each exit is compared with those of all exits
  before it, not only the previous one; exit once some class has been predicted by ``threshold``
  exits, consecutive or not, and answer that class. The paper's text is not available to us; this is
  our reading of "comparison-based" (documented in ``../shared/research/compression.md``): unlike
  patience, one dissenting exit does not reset the count.

Every rule answers with the last exit's prediction when it never fires.
"""

from __future__ import annotations

import math

import torch

from nagner.compression.leco.structured_rules import AgreementRule, VoteRule


class ExitRule:
    """Feed the probabilities (C,) of exits 1, 2, … to `step`; it returns the class to answer when
    the input may exit there, else None. `reset` before each input."""

    def __repr__(self) -> str:
        setting = next(iter(k for k in ("threshold", "patience") if hasattr(self, k)), None)
        return f"{type(self).__name__}({setting}={getattr(self, setting)!r})" if setting else f"{type(self).__name__}()"

    def reset(self) -> None:
        """Forget the exits of the previous input."""

    def step(self, probabilities: torch.Tensor) -> int | None:
        raise NotImplementedError


class MaxProbabilityRule(ExitRule):
    def __init__(self, threshold: float):
        self.threshold = threshold

    def step(self, probabilities: torch.Tensor) -> int | None:
        top, index = probabilities.max(-1)
        return int(index) if float(top) >= self.threshold else None


class EntropyRule(ExitRule):
    def __init__(self, threshold: float):
        self.threshold = threshold

    def step(self, probabilities: torch.Tensor) -> int | None:
        p = probabilities.clamp_min(1e-12)
        normalised = float(-(p * p.log()).sum()) / math.log(p.numel())
        return int(probabilities.argmax()) if normalised < self.threshold else None


class _ArgmaxCount(ExitRule):
    """A structured counting rule (`AgreementRule`, `VoteRule`) over the exits' argmax."""

    def __init__(self, counter: AgreementRule | VoteRule):
        self.counter = counter

    def reset(self) -> None:
        self.counter.reset()

    def step(self, probabilities: torch.Tensor) -> int | None:
        prediction = int(probabilities.argmax())
        return prediction if self.counter.step(prediction, 0.0) else None


class PatienceRule(_ArgmaxCount):
    """`AgreementRule` over the exits' argmax."""

    def __init__(self, patience: int):
        super().__init__(AgreementRule(patience))

    @property
    def patience(self) -> int:
        return self.counter.patience


class ComparisonRule(_ArgmaxCount):
    """`VoteRule` over the exits' argmax."""

    def __init__(self, threshold: int):
        super().__init__(VoteRule(threshold))

    @property
    def threshold(self) -> int:
        return self.counter.threshold


def decide(rule: ExitRule, probabilities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``rule`` over recorded exit outputs: probabilities (B, L, C) of L exits for B inputs →
    (exit layer (B,), 1-based; predicted class (B,))."""
    layers, predictions = [], []
    for row in probabilities:  # (L, C)
        rule.reset()
        answer, layer = None, row.shape[0]
        for index, p in enumerate(row):
            answer = rule.step(p)
            if answer is not None:
                layer = index + 1
                break
        if answer is None:
            answer = int(row[-1].argmax())
        layers.append(layer)
        predictions.append(answer)
    return torch.tensor(layers), torch.tensor(predictions)
