"""Mixed-adapter batches: sample i with adapter names[i] equals running sample i alone."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_bert, tiny_gpt2, tiny_llama
from torch import nn

import nagner.peft.mixed_batch as mixed_batch
from nagner.peft import (
    LoraConfig,
    adapted_layers,
    adapter_batch,
    attach,
    detach,
    disable,
    merge,
    set_active,
    unmerge,
)


@pytest.fixture(params=["gathered", "dense"], autouse=True)
def batched_path(request, monkeypatch):
    """Every test runs both ways of computing the batched deltas (gathered per-row factors for
    longer inputs, one masked matmul over all adapters for a few tokens per row)."""
    monkeypatch.setattr(mixed_batch, "DENSE_LIMIT", 0 if request.param == "gathered" else 10**9)


@torch.no_grad()
def randomize(model: nn.Module, name: str, seed: int, std: float = 0.3) -> None:
    generator = torch.Generator().manual_seed(seed)
    for layer in adapted_layers(model).values():
        if name in layer.adapters:
            for parameter in layer.adapters[name].parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


def with_adapters(model: nn.Module, configs: dict[str, LoraConfig]) -> nn.Module:
    for seed, (name, config) in enumerate(configs.items()):
        attach(model, config, name)
        randomize(model, name, seed)
    return model


BERT_ADAPTERS = {
    "a": LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"]),
    "b": LoraConfig(r=8, lora_alpha=8, target_modules="all-linear"),
    "c": LoraConfig(
        r=3,
        lora_alpha=6,
        target_modules=["output.dense"],
        layers_to_transform=[1],
        rank_pattern={"attention": 5},
    ),
}
DECODER_ADAPTERS = {
    "llama": {
        "a": LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]),
        "b": LoraConfig(r=4, lora_alpha=4, target_modules="all-linear"),
        "c": LoraConfig(r=3, lora_alpha=6, target_modules=["o_proj", "down_proj"], layers_to_transform=[0]),
    },
    "gpt2": {
        "a": LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"]),
        "b": LoraConfig(r=4, lora_alpha=4, target_modules="all-linear"),
        "c": LoraConfig(r=3, lora_alpha=6, target_modules=["mlp.c_proj"], layers_to_transform=[1]),
    },
}
NAMES = ["b", None, "a", "c", "b", "a"]
IDS = torch.randint(3, 100, (len(NAMES), 6), generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def alone(model: nn.Module, name: str | None, run):
    """``run()`` with only adapter ``name`` active (the base model for None)."""
    if name is None:
        with disable(model):
            return run()
    set_active(model, name)
    return run()


@torch.no_grad()
def encode(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).last_hidden_state


def test_an_encoder_batch_equals_each_sample_run_alone():
    model = with_adapters(tiny_bert(), BERT_ADAPTERS)
    with adapter_batch(model, NAMES):
        mixed = encode(model, IDS)
    expected = torch.cat(
        [alone(model, n, lambda i=i: encode(model, IDS[i : i + 1])) for i, n in enumerate(NAMES)]
    )
    torch.testing.assert_close(mixed, expected, rtol=1e-5, atol=1e-5)
    # the samples really differ by adapter (the test would be void otherwise)
    with disable(model):
        base = encode(model, IDS)
    assert all(not torch.allclose(mixed[i], base[i], atol=1e-2) for i, n in enumerate(NAMES) if n is not None)
    assert torch.equal(mixed[1], base[1])


def test_the_active_setting_comes_back_after_the_batch():
    model = with_adapters(tiny_bert(), BERT_ADAPTERS)
    set_active(model, ["a", "c"])
    before = encode(model, IDS)
    with adapter_batch(model, NAMES):
        encode(model, IDS)
    assert all(layer.mixed_batch is None for layer in adapted_layers(model).values())
    assert torch.equal(encode(model, IDS), before)


@pytest.mark.parametrize("beams", [1, 2])
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_generate_with_a_mixed_batch_equals_each_prompt_alone(family, beams):
    model = with_adapters(tiny_llama() if family == "llama" else tiny_gpt2(), DECODER_ADAPTERS[family])
    options = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False, num_beams=beams, pad_token_id=0)

    def generate(ids: torch.Tensor) -> torch.Tensor:
        return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **options)

    with torch.no_grad(), adapter_batch(model, NAMES):
        mixed = generate(IDS)
    expected = torch.cat([alone(model, n, lambda i=i: generate(IDS[i : i + 1])) for i, n in enumerate(NAMES)])
    assert torch.equal(mixed, expected)
    assert len({tuple(row.tolist()) for row in mixed[:, IDS.shape[1] :]}) > 2  # adapters change the tokens


def test_unknown_names_and_merged_adapters_raise():
    model = with_adapters(tiny_bert(), BERT_ADAPTERS)
    with pytest.raises(KeyError, match="'zz'.*attached: a, b, c"), adapter_batch(model, ["a", "zz"]):
        pass
    set_active(model, "a")
    merge(model)
    with pytest.raises(RuntimeError, match="unmerge"), adapter_batch(model, NAMES):
        encode(model, IDS)
    unmerge(model)
    with pytest.raises(ValueError, match="5 rows"), adapter_batch(model, NAMES[:2]):
        encode(model, IDS[:5])


def test_the_bank_follows_weight_changes_and_reattached_adapters():
    model = with_adapters(tiny_bert(), BERT_ADAPTERS)

    def check() -> None:
        with adapter_batch(model, NAMES):
            mixed = encode(model, IDS)
        expected = torch.cat(
            [alone(model, n, lambda i=i: encode(model, IDS[i : i + 1])) for i, n in enumerate(NAMES)]
        )
        torch.testing.assert_close(mixed, expected, rtol=1e-5, atol=1e-5)

    check()
    # a new adapter under an old name, its tensors written in place as often as the old one's
    detach(model, "c")
    attach(model, BERT_ADAPTERS["c"], "c")
    randomize(model, "c", seed=42)
    check()
    with torch.no_grad():  # an optimizer step changes weights in place
        for layer in adapted_layers(model).values():
            if "a" in layer.adapters:
                layer.adapters["a"].lora_B.weight.mul_(-2)
    check()
    for layer in adapted_layers(model).values():  # new data behind the same tensor, same version
        if "b" in layer.adapters:
            layer.adapters["b"].lora_A.weight.data = -layer.adapters["b"].lora_A.weight.data
    check()


def test_the_banks_are_checked_once_per_block_not_on_every_layer_call(monkeypatch):
    """Review item 6: the bank compared every tensor version of every adapter on every layer call
    (0.8 ms per call with 256 adapters), i.e. at every decoding step."""
    model = with_adapters(tiny_bert(), BERT_ADAPTERS)
    checks = []
    fits = mixed_batch._LayerBank.fits
    monkeypatch.setattr(mixed_batch._LayerBank, "fits", lambda self, *a: checks.append(1) or fits(self, *a))
    layers = sum(1 for layer in adapted_layers(model).values() if any(n in layer.adapters for n in "abc"))
    with adapter_batch(model, NAMES):
        for _ in range(4):  # four forward passes, e.g. four decoding steps
            encode(model, IDS)
    assert len(checks) <= layers  # at most once per layer (a fresh bank needs no check)


def test_a_half_precision_host_runs_float32_banks_and_keeps_its_dtype():
    model = with_adapters(tiny_llama().to(torch.bfloat16), DECODER_ADAPTERS["llama"])
    with torch.no_grad(), adapter_batch(model, NAMES):
        mixed = model(input_ids=IDS).logits
    assert mixed.dtype == torch.bfloat16
    expected = torch.cat(
        [alone(model, n, lambda i=i: model(input_ids=IDS[i : i + 1]).logits) for i, n in enumerate(NAMES)]
    )
    torch.testing.assert_close(mixed, expected, rtol=0.05, atol=0.05)
