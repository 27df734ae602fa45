"""TensorTrainLinear (LoRETTA's format): modes from the official table or the fallback rule, the
contraction against a reference einsum, the dense map, parameter counts by hand, init scale, and
the contracted weight reused outside training."""

from __future__ import annotations

import math

import pytest
import torch

from nagner.peft.methods.loretta.tensor_train import TensorTrainLinear, balanced_factors, tt_shape


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


def test_modes_come_from_the_official_table_wide_side_first() -> None:
    assert tt_shape(4096, 64) == [16, 16, 16, 4, 4, 4]  # Down of the Llama adapter
    assert tt_shape(64, 4096) == [4, 4, 4, 16, 16, 16]  # Up: the same modes, rows first
    assert tt_shape(768, 64) == [8, 8, 12, 8, 8]
    assert tt_shape(4096, 16) == [4, 4, 8, 8, 8, 8]  # LoRA A of the paper's LLaMA runs (r = 16)
    assert tt_shape(16, 4096) == [8, 8, 8, 8, 4, 4]


def test_shapes_outside_the_table_take_the_fewest_modes_up_to_16() -> None:
    assert tt_shape(32, 4) == [16, 8]  # 128 ≤ 16²
    assert tt_shape(300, 512) == balanced_factors(300 * 512, 5)  # 16⁴ < 153,600 ≤ 16⁵
    with pytest.raises(ValueError, match="multiply"):
        TensorTrainLinear(8, 8, rank=2, shape=[4, 4])


def test_contraction_equals_reference_einsum_and_the_row_major_reshape() -> None:
    torch.manual_seed(0)
    layer = TensorTrainLinear(in_features=12, out_features=16, rank=3, shape=[8, 6, 4])
    g1, g2, g3 = layer.cores  # (1, 8, r), (r, 6, r), (r, 4, 1)
    tensor = torch.einsum("xau,ubv,vcy->abc", g1, g2, g3)  # (8, 6, 4)
    torch.testing.assert_close(layer.full(), tensor.reshape(12, 16), rtol=0, atol=1e-6)
    # one entry by hand: W[i, j] = T at the row-major index of i·16 + j
    i, j = 5, 11
    a, rest = divmod(i * 16 + j, 6 * 4)
    b, c = divmod(rest, 4)
    entry = g1[0, a] @ g2[:, b] @ g3[:, c, 0]
    torch.testing.assert_close(layer.full()[i, j], entry, rtol=0, atol=1e-6)


def test_forward_is_x_times_w_plus_b() -> None:
    torch.manual_seed(0)
    layer = TensorTrainLinear(in_features=48, out_features=20, rank=5, bias=True)
    x = torch.randn(2, 3, 48)
    torch.testing.assert_close(layer(x), x @ layer.full() + layer.bias, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("in_features", "out_features", "rank", "expected"),
    [
        # R·(n_1 + n_d) + R²·(middle modes): the counts of the official code
        (4096, 8, 5, 5 * (16 + 4) + 25 * (16 + 8 + 4)),  # [16, 16, 8, 4, 4]: 800
        (4096, 64, 5, 5 * (16 + 4) + 25 * (16 + 16 + 4 + 4)),  # [16, 16, 16, 4, 4, 4]: 1,100
        (768, 64, 5, 5 * (8 + 8) + 25 * (8 + 12 + 8)),  # [8, 8, 12, 8, 8]: 780
        (4096, 16, 8, 8 * (4 + 8) + 64 * (4 + 8 + 8 + 8)),  # [4, 4, 8, 8, 8, 8]: 1,888
    ],
)
def test_parameter_count_by_hand(in_features: int, out_features: int, rank: int, expected: int) -> None:
    with torch.device("meta"):  # no weights needed to count
        layer = TensorTrainLinear(in_features, out_features, rank)
    assert sum(p.numel() for p in layer.parameters()) == expected
    assert expected in (800, 1100, 780, 1888)


def test_init_gives_glorot_like_entries_and_a_uniform_bias() -> None:
    torch.manual_seed(0)
    layer = TensorTrainLinear(in_features=256, out_features=256, rank=5, bias=True)
    std = layer.full().std().item()
    assert 0.6 * math.sqrt(1 / 512) < std < 1.4 * math.sqrt(1 / 512)
    assert layer.bias.abs().max() <= 1 / 16 and layer.bias.abs().max() > 1 / 32


def test_the_weight_is_reused_outside_training_until_a_core_changes() -> None:
    torch.manual_seed(0)
    layer = TensorTrainLinear(in_features=64, out_features=32, rank=4)
    contractions = []
    full = layer.full
    layer.full = lambda: contractions.append(1) or full()
    x = torch.randn(3, 64)
    with torch.no_grad():
        first = layer(x)
        assert torch.equal(layer(x), first) and len(contractions) == 1  # decoding: built once
        layer.cores[1].mul_(2.0)
        assert not torch.allclose(layer(x), first) and len(contractions) == 2  # a changed core is seen
    layer(x).sum().backward()  # training: rebuilt with its graph every call
    layer(x)
    assert len(contractions) == 4 and layer.cores[0].grad is not None


def test_rank_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rank"):
        TensorTrainLinear(8, 8, rank=0)
