"""QuantGPT and its baselines: quantizer values and gradients (hand-computed), the contrastive loss on
a hand-made case, the memory bank, tied weights, folding, bit accounting, QAT and real int8."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from tiny_generative_models import random_batches, tiny_bert2bert, tiny_gpt2
from torch import nn
from transformers import AutoModelForCausalLM

from nagner.compression.language_modeling import logit_distillation, predicted_positions
from nagner.compression.quantgpt import (
    ActivationQuantizer,
    MinMaxQuantizer,
    ModuleScaledQuantizer,
    PactQuantizer,
    QuantizedEmbedding,
    QuantizedLinear,
    QuantOptions,
    TeacherMemoryBank,
    dynamic_int8,
    fake_quantize,
    fold_quantized,
    quantize_model,
    quantize_with_qat,
    storage_report,
    token_contrastive_loss,
)
from nagner.compression.quantgpt.quantizers import levels


def test_fake_quantize_levels():
    values = torch.linspace(-2, 2, 101)
    two = fake_quantize(values, torch.tensor(1.0), 2)
    assert set(two.tolist()) == {-1.0, 0.0, 1.0}
    four = fake_quantize(values, torch.tensor(1.0), 4)
    assert len(set(four.tolist())) == 15 and four.abs().max() == 1.0
    with pytest.raises(ValueError, match="at least 2 bits"):
        fake_quantize(values, torch.tensor(1.0), 1)


def test_activation_quantizer_rounds_to_levels_of_the_tensors_own_largest_value():
    """Dynamic per-tensor min–max: at 3 bits the levels are k/3 · max|x| for k in −3..3; the gradient
    passes straight through (no clip: every value is inside its own ±max)."""
    values = torch.tensor([-0.9, -0.2, 0.1, 0.35, 0.6], requires_grad=True)
    quantized = ActivationQuantizer(3)(values)
    step = 0.9 / 3
    assert quantized.tolist() == pytest.approx([-3 * step, -1 * step, 0.0, 1 * step, 2 * step])
    quantized.sum().backward()
    assert values.grad.tolist() == [1.0] * 5
    assert ActivationQuantizer(8)(values).sub(values).abs().max() <= 0.9 / 127 / 2 + 1e-7


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_layers_compute_with_fake_quantized_weights_and_activations(bits):
    """A wrapped layer's output equals the float layer applied to the fake-quantized input and weight."""
    teacher = tiny_gpt2()
    student = quantize_model(copy.deepcopy(teacher), "minmax", bits, activation_bits=8)
    layer = student.transformer.h[0].mlp.c_fc
    assert isinstance(layer, QuantizedLinear)
    hidden = torch.randn(2, 5, 64)
    weight = teacher.transformer.h[0].mlp.c_fc.weight  # Conv1D: [in, out]
    expected = fake_quantize(hidden, hidden.abs().max(), 8) @ fake_quantize(weight, weight.abs().max(), bits)
    expected = expected + teacher.transformer.h[0].mlp.c_fc.bias
    torch.testing.assert_close(layer(hidden), expected, atol=1e-5, rtol=1e-5)
    assert len(set(layer.quantized_weight().flatten().tolist())) <= 2 * levels(bits) + 1


def test_straight_through_gradient_passes_inside_the_clip_and_stops_outside():
    values = torch.tensor([0.3, -0.7, 1.5, -2.0], requires_grad=True)
    fake_quantize(values, torch.tensor(1.0), 4).sum().backward()
    assert values.grad.tolist() == [1.0, 1.0, 0.0, 0.0]


WEIGHT = torch.tensor([0.3, -0.5, 2.0])  # mean |w| = 0.9333…


def test_module_scaled_clip_gradient_counts_weights_inside_and_outside_the_clip():
    quantizer = ModuleScaledQuantizer(WEIGHT, bits=2)  # n = 1 level each side
    mean = WEIGHT.abs().mean().item()
    with torch.no_grad():
        quantizer.gamma.fill_(1.0 / mean)  # α = 1
    quantized = quantizer(WEIGHT)
    assert quantized.tolist() == [0.0, 0.0, 1.0]  # round(0.3) = 0, round(-0.5) = -0 (half to even), clipped 2 → α
    quantized.sum().backward()
    # ∂q/∂α: inside (round(u) - u)/n = -0.3 and +0.5; outside sign(w) = +1; then ∂α/∂γ = mean|w|.
    assert quantizer.gamma.grad.item() == pytest.approx((-0.3 + 0.5 + 1.0) * mean, rel=1e-5)


def test_pact_clip_gradient_comes_from_clipped_weights_only():
    quantizer = PactQuantizer(WEIGHT, bits=2)
    with torch.no_grad():
        quantizer.alpha.fill_(1.0)
    quantizer(WEIGHT).sum().backward()
    assert quantizer.alpha.grad.item() == pytest.approx(1.0)


def test_min_max_clips_at_the_largest_weight_and_learns_nothing():
    quantizer = MinMaxQuantizer(WEIGHT, bits=2)
    assert list(quantizer.parameters()) == []
    assert quantizer(WEIGHT).tolist() == [0.0, 0.0, 2.0]


def test_initial_clip_minimises_the_quantization_error():
    weight = torch.randn(500, generator=torch.Generator().manual_seed(0))
    learned = PactQuantizer(weight, bits=2)
    error = float(((fake_quantize(weight, learned.alpha.detach(), 2) - weight) ** 2).mean())
    assert error < float(((fake_quantize(weight, weight.abs().max(), 2) - weight) ** 2).mean())


ROWS = torch.tensor([[0.3, -0.5, 2.0], [0.1, 0.2, -0.4]])  # two output channels of an [out, in] weight


def test_per_channel_min_max_clips_each_row_at_its_own_largest_weight():
    quantizer = MinMaxQuantizer(ROWS, bits=2, axis=0)
    # Row 0: α = 2, u = (0.15, -0.25, 1) → (0, 0, 1)·2. Row 1: α = 0.4, u = (0.25, 0.5, -1) → (0, 0, -1)·0.4
    # (0.5 rounds half to even, to 0). One clip per tensor would zero all of row 1.
    assert quantizer(ROWS).tolist() == [[0.0, 0.0, 2.0], [0.0, 0.0, pytest.approx(-0.4)]]
    assert MinMaxQuantizer(ROWS, bits=2)(ROWS)[1].tolist() == [0.0, 0.0, 0.0]


def test_per_channel_module_scaling_learns_one_gamma_per_row_with_its_own_gradient():
    quantizer = ModuleScaledQuantizer(ROWS, bits=2, axis=0)
    assert quantizer.gamma.shape == (2, 1)
    means = ROWS.abs().mean(dim=1, keepdim=True)  # 0.9333…, 0.2333…
    with torch.no_grad():
        quantizer.gamma.copy_(torch.tensor([[1.0], [0.3]]) / means)  # α = 1 and 0.3
    quantized = quantizer(ROWS)
    assert quantized.tolist() == [[0.0, 0.0, 1.0], [0.0, pytest.approx(0.3), pytest.approx(-0.3)]]
    quantized.sum().backward()
    # Row 0 as in the per-tensor case. Row 1: inside, u = 1/3 and 2/3 give (0 - 1/3) and (1 - 2/3);
    # outside, sign(-0.4) = -1.
    expected = torch.tensor([[(-0.3 + 0.5 + 1.0) * means[0, 0]], [(-1 / 3 + 1 / 3 - 1.0) * means[1, 0]]])
    torch.testing.assert_close(quantizer.gamma.grad, expected)


def test_per_channel_initial_clip_is_no_worse_than_one_clip_for_the_tensor_in_any_row():
    weight = torch.randn(6, 50, generator=torch.Generator().manual_seed(0)) * torch.logspace(-2, 0, 6)[:, None]
    per_row = fake_quantize(weight, PactQuantizer(weight, bits=4, axis=0).alpha.detach(), 4)
    per_tensor = fake_quantize(weight, PactQuantizer(weight, bits=4).alpha.detach(), 4)
    row_error = ((per_row - weight) ** 2).mean(dim=1)
    assert (row_error <= ((per_tensor - weight) ** 2).mean(dim=1) + 1e-12).all()
    # The smallest row (scale 0.01): one clip for the tensor rounds it all to 0; its own clip keeps it.
    assert per_tensor[0].eq(0).all() and row_error[0] < 0.05 * (weight[0] ** 2).mean()


def test_per_channel_model_quantizes_output_channels_of_every_layer_kind():
    """Rows of `nn.Linear` and `nn.Embedding` (the tied LM head shares the token rows), columns of
    GPT-2's `Conv1D` ([in, out]): each channel takes at most 2n + 1 values and keeps its own max."""
    model = quantize_model(tiny_gpt2(), "minmax", bits=2, activation_bits=None, granularity="channel")
    assert model.lm_head.weight_quantizer is model.transformer.wte.weight_quantizer
    conv = model.transformer.h[0].mlp.c_fc
    assert conv.weight_quantizer.axis == 1
    quantized, weight = conv.quantized_weight(), conv.inner.weight
    for column in range(quantized.shape[1]):
        assert len(set(quantized[:, column].tolist())) <= 3
    torch.testing.assert_close(quantized.abs().amax(dim=0), weight.abs().amax(dim=0))
    table = model.transformer.wte.quantized_weight()
    torch.testing.assert_close(table.abs().amax(dim=1), model.transformer.wte.inner.weight.abs().amax(dim=1))
    with pytest.raises(ValueError, match="unknown granularity"):
        quantize_model(tiny_gpt2(), "minmax", bits=4, granularity="group")


def test_quantized_weight_is_cached_without_grad_and_follows_weight_and_clip_changes():
    layer = quantize_model(nn.Sequential(nn.Linear(4, 3)), "pact", bits=4)[0]
    with torch.no_grad():
        first = layer.quantized_weight()
        assert layer.quantized_weight() is first  # reused
        layer.inner.weight.mul_(2.0)  # an optimizer-style in-place update
        doubled = layer.quantized_weight()
        assert doubled is not first
        layer.weight_quantizer.alpha.mul_(2.0)
        torch.testing.assert_close(layer.quantized_weight(), fake_quantize(layer.inner.weight, layer.weight_quantizer.alpha, 4))
    trained = layer.quantized_weight()  # with grad: recomputed, carries the graph
    assert trained.requires_grad and trained is not doubled
    assert "_cached" not in layer.state_dict()


def test_token_contrastive_loss_on_a_hand_made_case():
    eye = torch.eye(3)
    # Orthonormal tokens, student = teacher, τ = 1: the positive scores 1, each negative 0.
    assert token_contrastive_loss(eye, eye, temperature=1.0).item() == pytest.approx(-math.log(math.e / (math.e + 2)))
    bank = torch.tensor([[2.0, 0.0, 0.0]])  # a bank entry along token 0 (cosine 1 with it)
    expected = (-math.log(math.e / (2 * math.e + 2)) - 2 * math.log(math.e / (math.e + 3))) / 3
    assert token_contrastive_loss(eye, eye, bank, temperature=1.0).item() == pytest.approx(expected)
    # Lower when the student matches the teacher than when it matches another token.
    shifted = eye[[1, 2, 0]]
    assert token_contrastive_loss(shifted, eye, temperature=0.1) > token_contrastive_loss(eye, eye, temperature=0.1)


def test_memory_bank_is_a_bounded_fifo_of_detached_entries():
    bank = TeacherMemoryBank(size=3)
    assert bank.negatives() is None
    bank.push(torch.tensor([[1.0], [2.0]], requires_grad=True))
    bank.push(torch.tensor([[3.0], [4.0]]))
    assert bank.negatives().flatten().tolist() == [3.0, 4.0, 1.0]
    assert not bank.negatives().requires_grad


def test_tied_weights_share_one_quantizer_and_stay_tied_after_folding(tmp_path):
    model = quantize_model(tiny_gpt2(), "quantgpt", bits=4, activation_bits=None)
    assert isinstance(model.transformer.wte, QuantizedEmbedding) and isinstance(model.lm_head, QuantizedLinear)
    assert model.lm_head.weight_quantizer is model.transformer.wte.weight_quantizer
    batch = random_batches(model, 1)[0]
    with torch.no_grad():
        fake = model(**batch).logits
    folded = fold_quantized(model)
    assert folded.lm_head.weight is folded.transformer.wte.weight
    assert not any(isinstance(m, QuantizedLinear | QuantizedEmbedding) for m in folded.modules())
    assert folded.transformer.h[0].attn.c_attn.weight.unique().numel() <= 15
    with torch.no_grad():
        assert torch.allclose(folded(**batch).logits, fake, atol=1e-5)
    folded.save_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.allclose(AutoModelForCausalLM.from_pretrained(tmp_path).eval()(**batch).logits, fake, atol=1e-5)


def test_storage_report_counts_bits_by_hand():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3))
    report = storage_report(quantize_model(model, "minmax", bits=4))
    full = (40 + 12 + 3) * 32
    bits = (40 * 4 + 32) + (12 * 4 + 32) + 3 * 32  # each quantized tensor + one 32-bit clip; the bias in float
    assert (report["full_bits"], report["bits"]) == (full, bits)
    assert report["compression"] == pytest.approx(full / bits)
    assert report["bits_no_embeddings"] == 12 * 4 + 32 + 3 * 32
    # One 32-bit clip per output channel: 10 token rows, 3 output rows.
    channel = storage_report(quantize_model(nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3)), "pact", bits=4, granularity="channel"))
    assert channel["bits"] == (40 * 4 + 10 * 32) + (12 * 4 + 3 * 32) + 3 * 32


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown quantization method"):
        quantize_model(tiny_gpt2(), "lsq", bits=4)


def distillation_gap(student, teacher, batches) -> float:
    with torch.no_grad():
        return sum(
            logit_distillation(predicted_positions(student, b, student(**b).logits), predicted_positions(teacher, b, teacher(**b).logits)).item()
            for b in batches
        )


@pytest.mark.parametrize(
    ("make", "method", "granularity"),
    [
        (tiny_gpt2, "quantgpt", "tensor"),
        (tiny_gpt2, "pact", "tensor"),
        (tiny_bert2bert, "quantgpt", "tensor"),
        (tiny_bert2bert, "pact", "tensor"),
        (tiny_gpt2, "quantgpt", "channel"),
        (tiny_bert2bert, "quantgpt", "channel"),
    ],
)
def test_quantization_aware_training_brings_the_student_closer_to_the_teacher(make, method, granularity):
    teacher = make()
    batches = random_batches(teacher, 2)
    options = {"method": method, "bits": 2, "granularity": granularity}
    untrained, _ = quantize_with_qat(teacher, batches, QuantOptions(**options, steps=0))
    student, report = quantize_with_qat(teacher, batches, QuantOptions(**options, steps=12, learning_rate=1e-3))
    assert distillation_gap(student, teacher, batches) < distillation_gap(untrained, teacher, batches)
    assert report["storage"]["compression"] > 10
    # The teacher is left as it was (full precision, no wrappers).
    assert not any(isinstance(m, QuantizedLinear) for m in teacher.modules())


def test_real_int8_replaces_every_linear_layer_and_stays_close():
    model = tiny_gpt2()
    int8 = dynamic_int8(model)
    quantized = torch.ao.nn.quantized.dynamic.Linear
    assert "Conv1D" not in {type(m).__name__ for m in int8.modules()}
    assert sum(isinstance(m, quantized) for m in int8.modules()) == 2 * 4 + 1  # per block: qkv, out, fc, proj; the head
    assert not any(type(m) is nn.Linear for m in int8.modules())
    batch = random_batches(model, 1)[0]
    with torch.no_grad():
        full, quantized = model(**batch).logits, int8(**batch).logits
    assert (full - quantized).abs().max() < 0.05 * full.abs().max()
    assert type(model.transformer.h[0].attn.c_attn).__name__ == "Conv1D"  # the original is unchanged
