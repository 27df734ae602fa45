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


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown quantization method"):
        quantize_model(tiny_gpt2(), "lsq", bits=4)


def distillation_gap(student, teacher, batches) -> float:
    with torch.no_grad():
        return sum(
            logit_distillation(predicted_positions(student, b, student(**b).logits), predicted_positions(teacher, b, teacher(**b).logits)).item()
            for b in batches
        )


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_bert2bert])
@pytest.mark.parametrize("method", ["quantgpt", "pact"])
def test_quantization_aware_training_brings_the_student_closer_to_the_teacher(make, method):
    teacher = make()
    batches = random_batches(teacher, 2)
    untrained, _ = quantize_with_qat(teacher, batches, QuantOptions(method=method, bits=2, steps=0))
    student, report = quantize_with_qat(teacher, batches, QuantOptions(method=method, bits=2, steps=12, learning_rate=1e-3))
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
