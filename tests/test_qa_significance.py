"""Wilson intervals and exact McNemar tests, against values computed by hand."""

from __future__ import annotations

import pytest

from knowledge_qa.significance import mcnemar_exact, paired_comparison, wilson_interval


def test_wilson_interval_known_values():
    # Textbook values: 5/10 → (0.2366, 0.7634); 0/10 → (0, 0.2775).
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    low, high = wilson_interval(136, 229)
    assert low < 136 / 229 < high and high - low == pytest.approx(0.126, abs=1e-3)
    with pytest.raises(ValueError):
        wilson_interval(3, 0)


def test_mcnemar_exact_by_hand():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 2) == 0.5  # 2 · (1/2)²
    assert mcnemar_exact(1, 4) == pytest.approx(2 * (1 + 5) / 32)  # 2 · (C(5,0) + C(5,1)) / 2⁵ = 0.375
    assert mcnemar_exact(3, 10) == pytest.approx(0.09228515625)  # 2 · Σ_{k≤3} C(13,k) / 2¹³
    assert mcnemar_exact(5, 5) == 1.0


def test_paired_comparison_counts_only_disagreements():
    a = [True, True, True, False, True, False]
    b = [True, False, False, False, True, True]
    result = paired_comparison(a, b)
    assert (result.n, result.a_only, result.b_only) == (6, 2, 1)
    assert result.difference == pytest.approx(1 / 6)
    # spread = 1.96 · sqrt(3 − 1/6) / 6
    assert result.high - result.difference == pytest.approx(1.959963984540054 * (3 - 1 / 6) ** 0.5 / 6)
    assert result.p_value == pytest.approx(1.0)  # 2 · (C(3,0) + C(3,1)) / 8 = 1
    with pytest.raises(ValueError):
        paired_comparison([True], [True, False])
