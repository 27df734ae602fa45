"""How sure an accuracy, and a difference of two accuracies on the same questions, is.

* `wilson_interval`: the 95 % Wilson score interval of an accuracy (better than the normal
  approximation near 0 or 1 and for a few hundred questions).
* `paired_comparison`: two systems answering the same questions. Only the questions where they
  disagree carry information: b (A right, B wrong) and c (A wrong, B right). The p-value is the exact
  two-sided McNemar test (a binomial test of b against b + c at 1/2, no continuity correction needed),
  and the difference's 95 % interval is the Wald interval of a paired difference,
  (b − c) / n ± z · sqrt(b + c − (b − c)² / n) / n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``correct`` / ``total``."""
    if total <= 0 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total and total > 0, got {correct} / {total}")
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (1.0 when there are none)."""
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be non-negative")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class PairedComparison:
    """A − B on the same ``n`` questions: accuracy difference, its 95 % interval, the discordant
    counts (``a_only``: A right and B wrong; ``b_only``: the reverse) and the McNemar p-value."""

    n: int
    difference: float
    low: float
    high: float
    a_only: int
    b_only: int
    p_value: float


def paired_comparison(a_correct: Sequence[bool], b_correct: Sequence[bool], z: float = Z95) -> PairedComparison:
    """Compare two systems' per-question correctness (same questions, same order)."""
    if len(a_correct) != len(b_correct) or not a_correct:
        raise ValueError(f"need two equally long, non-empty lists, got {len(a_correct)} and {len(b_correct)}")
    n = len(a_correct)
    a_only = sum(bool(a) and not b for a, b in zip(a_correct, b_correct))
    b_only = sum(bool(b) and not a for a, b in zip(a_correct, b_correct))
    difference = (a_only - b_only) / n
    spread = z * math.sqrt(max(0.0, a_only + b_only - (a_only - b_only) ** 2 / n)) / n
    return PairedComparison(n, difference, difference - spread, difference + spread, a_only, b_only, mcnemar_exact(a_only, b_only))
