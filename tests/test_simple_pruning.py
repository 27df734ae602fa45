"""SIMPLE: masks, exact extraction, the shared hidden mask, parameter counts, plans, baselines' scores,
the distillation targets, and the recipe end to end, on tiny GPT-2 and bert2bert models."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_generative_models import VOCAB, random_batches, tiny_bert2bert, tiny_gpt2
from torch import nn
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from nagner.compression.language_modeling import captured_outputs
from nagner.compression.simple import (
    SimpleOptions,
    StructureMasks,
    count_parameters,
    describe,
    extract_pruned,
    learn_masks,
    loss_aware_scores,
    magnitude_scores,
    masked_layer_norm,
    masks_attached,
    movement_scores,
    plan_from_scores,
    prune_with_simple,
    sizes_for,
    sizes_for_reduction,
)
from nagner.compression.simple.recipe import _kv_pairs

MODELS = {"gpt2": tiny_gpt2, "bert2bert": tiny_bert2bert}


def forward(model, batch):
    if model.config.is_encoder_decoder:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).logits
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def random_masks(structure, seed=0):
    masks = StructureMasks(structure)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, mask in masks.items():
            mask.copy_(torch.rand(mask.shape, generator=generator) * 1.3 + 0.2)
    return masks


@pytest.mark.parametrize("kind", MODELS)
def test_extracted_model_computes_what_the_masked_model_computes(kind, tmp_path):
    model = MODELS[kind]()
    structure = describe(model)
    masks = random_masks(structure)
    sizes = sizes_for(structure, hidden=32, ffn=50)
    plan = plan_from_scores(structure, {g: m.detach() for g, m in masks.items()}, sizes)
    masks.keep_only_(plan)
    batch = random_batches(model, 1)[0]
    with torch.no_grad(), masks_attached(model, masks):
        masked = forward(model, batch)
    pruned = extract_pruned(model, structure, plan, masks).eval()
    with torch.no_grad():
        assert torch.allclose(forward(pruned, batch), masked, atol=1e-5)
    assert sum(p.numel() for p in pruned.parameters()) == count_parameters(model, structure, sizes)
    # A standard folder: the Auto classes load it without custom code.
    pruned.save_pretrained(tmp_path)
    auto = AutoModelForSeq2SeqLM if model.config.is_encoder_decoder else AutoModelForCausalLM
    reloaded = auto.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(forward(reloaded, batch), masked, atol=1e-5)


def test_the_hidden_mask_is_one_mask_shared_by_encoder_decoder_embeddings_and_every_layer():
    model = tiny_bert2bert()
    structure = describe(model)
    masks = StructureMasks(structure)
    assert [g for g in structure.groups() if not g.startswith(("heads:", "ffn:"))] == ["hidden"]
    with torch.no_grad():
        masks["hidden"][5] = 0.0
    names = structure.layer_outputs + [m.name for m in structure.modules if m.kind == "embedding"]
    encoder_layers = [n for n in structure.layer_outputs if n.startswith("encoder.")]
    decoder_layers = [n for n in structure.layer_outputs if n.startswith("decoder.")]
    assert encoder_layers and decoder_layers
    with torch.no_grad(), masks_attached(model, masks), captured_outputs(model, names) as outputs:
        forward(model, random_batches(model, 1)[0])
    for name in names:
        assert torch.all(outputs[name][..., 5] == 0), name
        assert outputs[name][..., 4].abs().sum() > 0, name


def test_masked_layer_norm_normalises_over_the_kept_dimensions_only():
    norm = nn.LayerNorm(4)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        norm.bias.copy_(torch.tensor([0.5, 0.5, 0.5, 0.5]))
    x = torch.tensor([[1.0, 100.0, 3.0, 5.0]])
    mask = torch.tensor([1.0, 0.0, 1.0, 2.0])
    out = masked_layer_norm(norm, x, mask)
    kept = torch.tensor([1.0, 3.0, 5.0])  # mean 3, variance 8/3
    normalised = (kept - 3.0) / torch.sqrt(torch.tensor(8.0 / 3.0) + norm.eps)
    expected = (normalised * torch.tensor([1.0, 3.0, 4.0]) + 0.5) * torch.tensor([1.0, 1.0, 2.0])
    assert out[0, 1] == 0
    assert torch.allclose(out[0, [0, 2, 3]], expected, atol=1e-6)


def test_parameter_count_matches_the_gpt2_formula():
    model = tiny_gpt2()
    structure = describe(model)
    h, f, positions, layers = 32, 40, 32, 2
    per_layer = 2 * h + (h * 3 * h + 3 * h) + (h * h + h) + 2 * h + (h * f + f) + (f * h + h)
    expected = VOCAB * h + positions * h + layers * per_layer + 2 * h  # the LM head is tied to wte
    assert count_parameters(model, structure, sizes_for(structure, h, f)) == expected
    assert count_parameters(model, structure) == sum(p.numel() for p in model.parameters())
    assert count_parameters(model, structure, embeddings=False) == count_parameters(model, structure) - VOCAB * 64 - positions * 64


def test_plans_keep_each_groups_top_scores():
    model = tiny_gpt2(hidden=64, heads=2)  # head size 32
    structure = describe(model)
    scores = {g: torch.zeros(structure.size(g)) for g in structure.groups()}
    scores["hidden"][32:] = 1.0
    scores["heads:transformer.h.0"] = torch.tensor([0.2, 0.9])
    scores["heads:transformer.h.1"] = torch.tensor([0.7, 0.1])
    scores["ffn:transformer.h.1"][100:120] = 1.0
    plan = plan_from_scores(structure, scores, sizes_for(structure, 32, 15))
    assert plan.hidden == list(range(32, 64))
    assert plan.heads == {"transformer.h.0": [1], "transformer.h.1": [0]}
    assert plan.ffn["transformer.h.1"] == list(range(100, 115))  # ties: the lower index
    assert plan.ffn["transformer.h.0"] == list(range(15))
    with pytest.raises(ValueError, match="multiple of the head size"):
        sizes_for(structure, 48, 10)


@pytest.mark.parametrize("reduction", [0.26, 0.48, 0.67])
def test_sizes_for_reduction_meet_the_budget_with_balanced_shapes(reduction):
    model = tiny_gpt2(hidden=128, heads=8)  # head size 16: hidden sizes 16, 32, …, 128
    structure = describe(model)
    full = count_parameters(model, structure)
    sizes = sizes_for_reduction(model, structure, reduction)
    assert abs(count_parameters(model, structure, sizes) - (1 - reduction) * full) <= 0.01 * full
    assert abs(sizes.ffn / 512 - sizes.hidden / 128) <= 0.25
    assert sizes.heads == sizes.hidden // 16


def test_magnitude_score_of_a_head_is_the_squared_norm_of_its_weights():
    model = tiny_bert2bert()
    structure = describe(model)
    scores = magnitude_scores(model, structure)
    with torch.no_grad():
        attention = model.encoder.encoder.layer[0].attention
        d = structure.head_dim
        head = slice(d, 2 * d)  # head 1
        expected = sum(float((getattr(attention.self, p).weight[head] ** 2).sum() + (getattr(attention.self, p).bias[head] ** 2).sum())
                       for p in ("query", "key", "value"))
        expected += float((attention.output.dense.weight[:, head] ** 2).sum())
    assert scores["heads:encoder.encoder.layer.0.attention"][1].item() == pytest.approx(expected, rel=1e-5)


def test_loss_aware_score_is_the_first_order_taylor_term_of_the_weights():
    """∂L/∂gate of an FFN neuron = Σ W·∂L/∂W over the output-projection column it feeds."""
    model = tiny_gpt2()
    structure = describe(model)
    batch = random_batches(model, 1)[0]
    loss_of = lambda m, b: m(**b).loss  # noqa: E731
    scores = loss_aware_scores(model, structure, [batch], loss_of)
    model.zero_grad()
    loss_of(model, batch).backward()
    c_proj = model.transformer.h[1].mlp.c_proj  # Conv1D weight [ffn, hidden]
    taylor = (c_proj.weight * c_proj.weight.grad).sum(dim=1).abs()
    assert torch.allclose(scores["ffn:transformer.h.1"], taylor, atol=1e-6)


def test_movement_score_sums_minus_the_gate_gradient_over_the_fine_tuning_steps():
    """−Σ_t ∂L/∂gate: at learning rate 0 the weights stay, so two steps give −2·Σ W·∂L/∂W (signed,
    unlike the loss-aware |·|); with a real learning rate the model passed in is trained in place."""
    model = tiny_gpt2()
    structure = describe(model)
    batch = random_batches(model, 1)[0]
    loss_of = lambda m, b: m(**b).loss  # noqa: E731
    reference = copy.deepcopy(model)
    loss_of(reference, batch).backward()
    c_proj = reference.transformer.h[1].mlp.c_proj  # Conv1D weight [ffn, hidden]
    taylor = (c_proj.weight * c_proj.weight.grad).sum(dim=1)
    assert (taylor > 0).any() and (taylor < 0).any()  # the sign matters here
    scores = movement_scores(copy.deepcopy(model), structure, [batch], loss_of, steps=2, learning_rate=0.0)
    assert torch.allclose(scores["ffn:transformer.h.1"], -2 * taylor, atol=1e-5)
    trained = copy.deepcopy(model)
    movement_scores(trained, structure, [batch], loss_of, steps=1, learning_rate=1e-2)
    assert not torch.equal(trained.transformer.h[1].mlp.c_proj.weight, model.transformer.h[1].mlp.c_proj.weight)


def test_distillation_targets_are_zero_for_a_student_that_keeps_everything():
    model = tiny_gpt2()
    structure = describe(model)
    full_scores = {g: torch.ones(structure.size(g)) for g in structure.groups()}
    plan = plan_from_scores(structure, full_scores, sizes_for(structure, 64, 256))
    student = extract_pruned(model, structure, plan)
    names = [n for pair in structure.kv_modules.values() for n in pair if n]
    batch = random_batches(model, 1)[0]
    with captured_outputs(model, names) as teacher_out, captured_outputs(student, names) as student_out, torch.no_grad():
        model(**batch)
        student(**batch)
    for block in structure.kv_modules:
        pairs = _kv_pairs(structure, plan, block, teacher_out, student_out)
        assert len(pairs) == 2
        for teacher, mine in pairs:
            assert teacher.shape == mine.shape and torch.equal(teacher, mine)


def test_mask_learning_pushes_masks_down_and_keeps_them_non_negative():
    model = tiny_gpt2()
    batches = random_batches(model, 2)
    _, _, masks, losses = learn_masks(model, batches, SimpleOptions(mask_steps=15, l1=0.05, mask_learning_rate=0.05))
    # (a deliberately large step: the default keeps lr × steps below 1)
    values = torch.cat([m.detach() for _, m in masks.items()])
    assert values.min() >= 0 and values.mean() < 0.8
    assert len(losses) == 15


@pytest.mark.parametrize("kind", MODELS)
def test_prune_with_simple_returns_a_smaller_working_model(kind):
    model = MODELS[kind]()
    batches = random_batches(model, 2)
    pruned, report = prune_with_simple(model, batches, 0.5, SimpleOptions(mask_steps=5, finetune_steps=3))
    assert report["parameters"]["pruned"] == sum(p.numel() for p in pruned.parameters())
    assert 0.3 < report["parameters"]["reduction"] < 0.7
    with torch.no_grad():
        assert torch.isfinite(forward(pruned, batches[0])).all()
    assert sum(p.numel() for p in model.parameters()) == count_parameters(model, describe(model))  # teacher unchanged


def test_unsupported_models_are_refused_by_name():
    with pytest.raises(ValueError, match="supports BERT-style models"):
        describe(nn.Sequential(nn.Linear(2, 2)))


def test_masks_detach_cleanly():
    model = tiny_gpt2()
    batch = random_batches(model, 1)[0]
    before = forward(model, batch).detach()
    masks = StructureMasks(describe(model))
    with torch.no_grad():
        masks["hidden"].zero_()
    with masks_attached(model, masks):
        pass
    assert torch.equal(forward(model, batch).detach(), before)
    assert copy.deepcopy(masks)["hidden"].sum() == 0


def test_a_dimension_large_for_every_input_is_reported_as_a_persistent_outlier():
    from nagner.compression.simple import hidden_outliers

    model = tiny_gpt2()
    with torch.no_grad():
        model.transformer.h[0].mlp.c_proj.bias[7] = 50.0  # every token's residual stream gets +50 on dimension 7
    structure = describe(model)
    report = hidden_outliers(model, random_batches(model, 2), structure.layer_outputs)
    assert [row["layer"] for row in report] == structure.layer_outputs
    for row in report:
        assert row["top_dimensions"][0] == 7 and row["top_is_input_argmax"] == 1.0 and row["max_over_median"] > 10
