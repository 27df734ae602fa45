"""TTMatrix: factor rule, contraction against a reference einsum, TT mat-vec, parameter count, init scale."""

from __future__ import annotations

import math

import pytest
import torch

from nagner.peft.tensor_train import TTMatrix, balanced_factors, tt_factors


@pytest.mark.parametrize(
    ("n", "parts", "expected"),
    [
        (768, 3, [12, 8, 8]),
        (64, 2, [8, 8]),
        (8, 2, [4, 2]),
        (5, 2, [5, 1]),
        (4096, 3, [16, 16, 16]),
        (1, 2, [1, 1]),
    ],
)
def test_balanced_factors(n: int, parts: int, expected: list[int]) -> None:
    assert balanced_factors(n, parts) == expected
    assert math.prod(expected) == n


def test_core_count_is_the_fewest_with_modes_up_to_16() -> None:
    assert tt_factors(64, 8) == ([8, 8], [4, 2])
    assert tt_factors(768, 8) == ([12, 8, 8], [2, 2, 2])
    assert tt_factors(4097, 8)[0] == balanced_factors(4097, 4)  # 16^3 < 4097


def test_contraction_equals_reference_einsum() -> None:
    torch.manual_seed(0)
    layer = TTMatrix(in_features=12, out_features=16, rank=3)  # 16 ≤ 16²: 2 cores
    g1, g2 = layer.cores  # (1, m1, n1, r), (r, m2, n2, 1)
    reference = torch.einsum("xaib,bcjy->acij", g1, g2).reshape(16, 12)
    torch.testing.assert_close(layer.full(), reference, rtol=0, atol=1e-6)

    big = TTMatrix(in_features=300, out_features=512, rank=4)  # 512 > 16²: 3 cores
    assert len(big.cores) == 3
    a, b, c = big.cores
    reference = torch.einsum("xaiu,ubjv,vckz->abcijk", a, b, c).reshape(512, 300)
    torch.testing.assert_close(big.full(), reference, rtol=0, atol=1e-6)


def test_forward_and_matvec_agree_with_the_dense_map() -> None:
    torch.manual_seed(0)
    layer = TTMatrix(in_features=48, out_features=20, rank=5, bias=True)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 3, 48)
    dense = x @ layer.full().T + layer.bias
    torch.testing.assert_close(layer(x), dense, rtol=0, atol=1e-5)
    torch.testing.assert_close(layer.matvec(x), dense, rtol=0, atol=1e-5)


def test_parameter_count_is_the_closed_form() -> None:
    layer = TTMatrix(in_features=768, out_features=64, rank=5, bias=True)
    r, k = layer.ranks, [m * n for m, n in zip(layer.out_factors, layer.in_factors, strict=True)]
    formula = sum(r[i] * k[i] * r[i + 1] for i in range(len(k))) + 64
    assert sum(p.numel() for p in layer.parameters()) == formula
    # 768 = 12·8·8, 64 = 4·4·4 → k = 48, 32, 32: 1·48·5 + 5·32·5 + 5·32·1 + 64
    assert formula == 240 + 800 + 160 + 64


def test_init_gives_glorot_like_entries() -> None:
    torch.manual_seed(0)
    layer = TTMatrix(in_features=256, out_features=256, rank=5)
    std = layer.full().std().item()
    assert 0.6 * math.sqrt(1 / 512) < std < 1.4 * math.sqrt(1 / 512)


def test_rank_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rank"):
        TTMatrix(8, 8, rank=0)
