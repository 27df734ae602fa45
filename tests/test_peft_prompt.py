"""The prompt-conditioned plumbing (`nagner.peft.prompt`): rational activation, poolers, layer
grouping, the prompt mask for teacher forcing, mixed-adapter batches, detaching, deep copies."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_prompt_models import VOCAB, ids, randomize, tiny_llama
from torch import nn
from transformers import BertConfig, BertModel

from nagner.peft import adapter_batch, adapter_parameters, attach, auxiliary_loss, detach, set_active
from nagner.peft.methods.milora import MiLoraConfig
from nagner.peft.methods.para import ParaConfig
from nagner.peft.prompt import (
    PromptPooler,
    RationalActivation,
    bilevel_parameters,
    group_by_layer,
    layer_prefix,
    prompt_extras,
    prompt_mask,
)


# ------------------------------------------------------------------------------- components
def test_rational_activation_starts_as_gelu_and_learns():
    activation = RationalActivation()
    x = torch.linspace(-10, 10, 2001)
    assert (activation(x) - nn.functional.gelu(x)).abs().max() < 0.007
    assert sum(p.numel() for p in activation.parameters()) == 12
    activation(torch.randn(5)).sum().backward()
    assert activation.numerator.grad.abs().sum() > 0 and activation.denominator.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["self_attention", "mean", "max", "last"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_poolers_ignore_padding(kind, side):
    torch.manual_seed(0)
    pooler = PromptPooler(kind, 8)
    if pooler.score is not None:
        nn.init.normal_(pooler.score.weight)
    hidden = torch.randn(1, 4, 8)
    pad = torch.full((1, 2, 8), float("nan"))  # fully masked attention rows can be NaN
    padded = torch.cat([pad, hidden], 1) if side == "left" else torch.cat([hidden, pad], 1)
    mask = torch.ones(1, 6, dtype=torch.bool)
    mask[0, slice(0, 2) if side == "left" else slice(4, 6)] = False
    assert torch.allclose(pooler(padded, mask), pooler(hidden, None), atol=1e-6)


def test_modules_are_grouped_by_their_layer():
    assert layer_prefix("encoder.block.3.layer.0.SelfAttention.q") == "encoder.block.3"
    assert layer_prefix("model.layers.11.mlp.up_proj") == "model.layers.11"
    assert layer_prefix("h.2.block.5.q", layers_pattern="block") == "h.2.block.5"
    names = [
        "bert.encoder.layer.0.attention.self.query",
        "bert.encoder.layer.1.output.dense",
        "bert.encoder.layer.0.intermediate.dense",
    ]
    assert group_by_layer(names) == {
        "bert.encoder.layer.0": [names[0], names[2]],
        "bert.encoder.layer.1": [names[1]],
    }
    with pytest.raises(ValueError, match="pooler.dense sit in no numbered layer"):
        group_by_layer([*names, "bert.pooler.dense"])


# ------------------------------------------------------------------------------ the prompt
# (MiLoRA gates weighted by probability, so that any change of routing shows in the values)
@pytest.mark.parametrize("config", [MiLoraConfig(r=2, top_k=2, gate_weighting="probability"), ParaConfig(r=4)])
def test_teacher_forcing_routes_on_the_prompt_tokens_only(config):
    model = tiny_llama()
    attach(model, config)
    randomize(model, "default", seed=3)
    extras = prompt_extras(model)[0]
    prompt, response = ids(2, 5), ids(2, 3, seed=2)
    with torch.no_grad():
        model(prompt)
        alone = [s.value.clone() for s in extras.signals]
        full = torch.cat([prompt, response], 1)
        mask = torch.zeros_like(full)
        mask[:, :5] = 1
        with prompt_mask(model, mask):
            model(full)
        forced = [s.value.clone() for s in extras.signals]
        model(full)
        unmasked = [s.value.clone() for s in extras.signals]
    for a, b, c in zip(alone, forced, unmasked):
        assert torch.allclose(a, b, atol=1e-6)
        assert not torch.allclose(a, c, atol=1e-4)


def test_an_empty_prompt_row_is_an_error():
    model = tiny_llama()
    attach(model, ParaConfig())
    mask = torch.ones(2, 4, dtype=torch.long)
    mask[1] = 0
    with pytest.raises(ValueError, match="no prompt token"):
        model(ids(2, 4), attention_mask=mask)


# ----------------------------------------------------------------------- mixed-adapter batches
@torch.no_grad()
def test_mixed_batch_rows_route_on_their_own_prompt():
    model = tiny_llama()
    attach(model, MiLoraConfig(r=2, top_k=2), "m")
    attach(model, ParaConfig(r=4), "p")
    randomize(model, "m", seed=4)
    randomize(model, "p", seed=5)
    batch = ids(4, 6)
    names = ["m", None, "p", "m"]
    with adapter_batch(model, names):
        mixed = model(batch).logits
        generated = model.generate(batch, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    for row, name in enumerate(names):
        if name is None:
            detach_free = copy.deepcopy(model)
            detach(detach_free)
            alone, alone_generated = detach_free(batch[row : row + 1]).logits, None
        else:
            set_active(model, name)
            alone = model(batch[row : row + 1]).logits
            alone_generated = model.generate(
                batch[row : row + 1], max_new_tokens=3, min_new_tokens=3, do_sample=False
            )
        assert torch.allclose(mixed[row : row + 1], alone, atol=1e-5), name
        if alone_generated is not None:
            assert torch.equal(generated[row : row + 1], alone_generated), name


# ------------------------------------------------------------------------- detach / copies
def test_detach_removes_every_hook_and_the_generate_wrapper():
    model = tiny_llama()
    attach(model, MiLoraConfig(r=2), "m")
    attach(model, ParaConfig(r=2), "p")
    assert "generate" in model.__dict__
    assert len(model.model._forward_pre_hooks) == 2 and len(model.model.layers[0]._forward_pre_hooks) == 2
    detach(model, "m")
    assert "generate" in model.__dict__ and len(model.model._forward_pre_hooks) == 1
    detach(model, "p")
    assert "generate" not in model.__dict__
    assert not model.model._forward_pre_hooks and not model.model._forward_hooks
    assert not model.model.layers[0]._forward_pre_hooks


@torch.no_grad()
def test_a_deep_copy_routes_with_its_own_weights():
    model = tiny_llama()
    attach(model, MiLoraConfig(r=2, top_k=1))
    randomize(model, "default", seed=6)
    twin = copy.deepcopy(model)
    randomize(twin, "default", seed=7)
    prompt = ids(1, 5)
    first = model.generate(prompt, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    twin.generate(prompt, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert torch.equal(model.generate(prompt, max_new_tokens=4, min_new_tokens=4, do_sample=False), first)
    original, copied = prompt_extras(model)[0], prompt_extras(twin)[0]
    assert not torch.allclose(original.signals[0].value, copied.signals[0].value)
    detach(twin)
    assert "generate" in model.__dict__ and len(model.model._forward_pre_hooks) == 1


def test_bilevel_split_puts_the_rational_coefficients_apart():
    model = tiny_llama()
    attach(model, MiLoraConfig(r=2))
    omega, theta = bilevel_parameters(model, "default")
    assert sum(p.numel() for p in theta) == 12 * 2  # one rational activation per layer
    everything = {id(p) for _, p in adapter_parameters(model, "default")}
    assert {id(p) for p in omega} | {id(p) for p in theta} == everything
    assert not {id(p) for p in omega} & {id(p) for p in theta}
    with pytest.raises(KeyError):
        bilevel_parameters(model, "nope")
    model(ids(2, 4))
    assert auxiliary_loss(model) is not None


@torch.no_grad()
def test_a_custom_model_around_bert_still_pools_without_the_padding():
    class Tagger(nn.Module):  # like the NER model: its forward is not a transformers one
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.encoder = BertModel(
                BertConfig(
                    vocab_size=VOCAB,
                    hidden_size=32,
                    num_hidden_layers=2,
                    num_attention_heads=2,
                    intermediate_size=64,
                )
            ).eval()
            self.config = self.encoder.config

        def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.encoder(input_ids=batch["ids"], attention_mask=batch["mask"]).last_hidden_state

    model = Tagger()
    attach(model, ParaConfig(r=4))
    randomize(model, "default", seed=8)
    batch = ids(2, 6)
    mask = torch.ones_like(batch)
    mask[1, 3:] = 0
    out = model({"ids": batch, "mask": mask})
    alone = model({"ids": batch[1:, :3], "mask": mask[1:, :3]})
    assert torch.allclose(out[1, :3], alone[0], atol=1e-5)
