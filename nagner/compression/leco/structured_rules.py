"""Exit rules for structured outputs (an entity set, a tag sequence): the exits' predictions are
compared as whole values, not as class probabilities.

* `AgreementRule` (PABEE for structures): exit once the prediction has stayed the same for
  ``patience`` exits in a row after the first.
* `VoteRule` (COBEE for structures): exit once the same prediction has come from ``threshold``
  exits, consecutive or not (a dissenting exit in between does not reset the count).
* `UncertaintyRule` (the sentence-level rule of Li et al., ACL 2021): exit once the most uncertain
  token's uncertainty is at most τ.

`step` is called after each exit with that exit's prediction (any hashable value) and the
sentence's uncertainty (its largest per-token uncertainty, in [0, 1]); it says whether to stop.
The caller answers with the prediction of the exit where it stopped (the last exit's if none).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence


class StructuredExitRule:
    """`reset` before each input, then `step` after each exit."""

    def reset(self) -> None:
        """Forget the exits of the previous input."""

    def step(self, prediction: Hashable, uncertainty: float) -> bool:
        raise NotImplementedError


class AgreementRule(StructuredExitRule):
    def __init__(self, patience: int):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self.reset()

    def reset(self) -> None:
        self.previous: Hashable | None = None
        self.started = False
        self.count = 0

    def step(self, prediction: Hashable, uncertainty: float) -> bool:
        self.count = self.count + 1 if self.started and prediction == self.previous else 0
        self.previous, self.started = prediction, True
        return self.count >= self.patience

    def __repr__(self) -> str:
        return f"AgreementRule(patience={self.patience})"


class VoteRule(StructuredExitRule):
    def __init__(self, threshold: int):
        if threshold < 1:
            raise ValueError(f"threshold must be >= 1, got {threshold}")
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self.votes: dict[Hashable, int] = {}

    def step(self, prediction: Hashable, uncertainty: float) -> bool:
        self.votes[prediction] = self.votes.get(prediction, 0) + 1
        return self.votes[prediction] >= self.threshold

    def __repr__(self) -> str:
        return f"VoteRule(threshold={self.threshold})"


class UncertaintyRule(StructuredExitRule):
    def __init__(self, threshold: float):
        self.threshold = threshold

    def step(self, prediction: Hashable, uncertainty: float) -> bool:
        return uncertainty <= self.threshold

    def __repr__(self) -> str:
        return f"UncertaintyRule(threshold={self.threshold})"


def decide_structured(rule: StructuredExitRule, exits: Sequence[tuple[Hashable, float]]) -> int:
    """Run ``rule`` over one input's recorded exits [(prediction, uncertainty) per exit] → the
    exit (1-based) where it stops (the last if it never fires)."""
    rule.reset()
    for index, (prediction, uncertainty) in enumerate(exits):
        if rule.step(prediction, uncertainty):
            return index + 1
    return len(exits)


RULES = {"agreement": (AgreementRule, int), "vote": (VoteRule, int), "uncertainty": (UncertaintyRule, float)}


def parse_structured_rule(text: str) -> StructuredExitRule:
    """``NAME:VALUE`` → a rule: ``agreement:P`` (patience), ``vote:K`` (exits that must agree),
    ``uncertainty:T`` (the largest token uncertainty allowed, 0–1). ValueError with the accepted
    forms for anything else."""
    name, _, value = text.partition(":")
    forms = "agreement:P, vote:K or uncertainty:T (e.g. agreement:1)"
    if name not in RULES or not value:
        raise ValueError(f"unknown exit rule {text!r}: expected {forms}")
    rule_class, kind = RULES[name]
    try:
        return rule_class(kind(value))
    except ValueError:
        raise ValueError(f"bad value in exit rule {text!r}: expected {forms}") from None
