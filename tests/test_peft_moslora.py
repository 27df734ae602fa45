"""MoSLoRA: LoRA with a learnable r×r mixer (no-op attach, identity mixer == LoRA, merge, export)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertConfig, BertModel

from nagner.peft import (
    LoraConfig,
    adapter_batch,
    adapter_config,
    attach,
    export_peft_lora,
    load_adapter,
    merge,
    parameter_counts,
    save_adapter,
    unmerge,
)
from nagner.peft.methods.moslora import MosLoraAdapter, MosLoraConfig

TARGETS = ["query", "value", "output.dense"]


def tiny_bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100
    )
    return BertModel(config).eval()


def inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[2, 5:] = 0
    return {"input_ids": torch.randint(0, 100, (3, 7), generator=generator), "attention_mask": mask}


def run(model: BertModel) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs()).last_hidden_state


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int = 3) -> None:
    """Non-zero B (and everything else of the adapters), so the delta is not trivially zero."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        if ".adapters." in name:
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)


def test_attach_is_a_no_op_for_every_mixer_init() -> None:
    base = tiny_bert()
    expected = run(base)
    for init in ("kaiming", "orthogonal", "identity"):
        model = copy.deepcopy(base)
        attach(model, MosLoraConfig(r=4, target_modules=TARGETS, mixer_init=init))
        assert torch.equal(run(model), expected)


def test_zero_mixer_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="never trains"):
        MosLoraConfig(r=4, target_modules=TARGETS, mixer_init="zeros")
    with pytest.raises(ValueError, match="mixer_init must be one of"):
        MosLoraConfig(r=4, target_modules=TARGETS, mixer_init="xavier")


def test_mixer_inits() -> None:
    model = tiny_bert()
    attach(model, MosLoraConfig(r=4, target_modules=["query"], mixer_init="orthogonal"), "orth")
    attach(model, MosLoraConfig(r=4, target_modules=["query"], mixer_init="identity"), "ident")
    layer = model.encoder.layer[0].attention.self.query
    M = layer.adapters["orth"].lora_mixer.weight
    torch.testing.assert_close(M @ M.T, torch.eye(4), atol=1e-6, rtol=0)
    assert torch.equal(layer.adapters["ident"].lora_mixer.weight, torch.eye(4))


def test_identity_mixer_equals_lora_with_the_same_factors() -> None:
    base = tiny_bert()
    lora, moslora = copy.deepcopy(base), copy.deepcopy(base)
    attach(lora, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    attach(moslora, MosLoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, mixer_init="identity"))
    randomise(lora)
    with torch.no_grad():
        for (name, p), (other, q) in zip(
            lora.named_parameters(),
            (item for item in moslora.named_parameters() if "lora_mixer" not in item[0]),
        ):
            assert name == other
            q.copy_(p)
    torch.testing.assert_close(run(moslora), run(lora), atol=1e-6, rtol=0)


def test_merged_equals_unmerged_and_unmerge_restores_weights() -> None:
    model = tiny_bert()
    attach(model, MosLoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    randomise(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    unmerged = run(model)
    assert not torch.allclose(unmerged, run(tiny_bert()), atol=1e-3)  # the adapter does something
    merge(model)
    torch.testing.assert_close(run(model), unmerged, atol=1e-5, rtol=1e-5)
    unmerge(model)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=1e-6, msg=key)


def test_parameter_count_is_lora_plus_r_squared() -> None:
    model = tiny_bert()
    r = 4
    attach(model, MosLoraConfig(r=r, target_modules=["query", "intermediate.dense"]))
    # query: 32→32, intermediate.dense: 32→64; two layers each.
    expected = 2 * (r * (32 + 32) + r * r) + 2 * (r * (32 + 64) + r * r)
    assert parameter_counts(model)["adapter"] == expected
    assert parameter_counts(model)["trainable"] == expected


def test_as_lora_folds_the_mixer_into_A_and_mixed_batches_use_it() -> None:
    model = tiny_bert()
    attach(model, MosLoraConfig(r=4, target_modules=TARGETS))
    randomise(model)
    adapter: MosLoraAdapter = model.encoder.layer[0].attention.self.query.adapters["default"]
    A, B = adapter.as_lora()
    expected = adapter.scaling * adapter.lora_B.weight @ adapter.lora_mixer.weight @ adapter.lora_A.weight
    torch.testing.assert_close(B @ A, expected, atol=1e-6, rtol=1e-6)
    with adapter_batch(model, ["default", "default", "default"]):
        mixed = run(model)
    torch.testing.assert_close(mixed, run(model), atol=1e-5, rtol=1e-5)


def test_save_load_round_trip(tmp_path) -> None:
    model = tiny_bert()
    attach(model, MosLoraConfig(r=4, target_modules=TARGETS, mixer_init="orthogonal"))
    randomise(model)
    save_adapter(model, tmp_path / "moslora")
    fresh = tiny_bert()
    load_adapter(fresh, tmp_path / "moslora")
    assert isinstance(adapter_config(fresh), MosLoraConfig)
    assert adapter_config(fresh).mixer_init == "orthogonal"
    assert torch.equal(run(fresh), run(model))


def test_export_loads_in_peft_with_the_same_outputs(tmp_path) -> None:
    peft = pytest.importorskip("peft")
    base = tiny_bert()
    model = copy.deepcopy(base)
    attach(model, MosLoraConfig(r=4, lora_alpha=16, target_modules=TARGETS))
    randomise(model)
    export_peft_lora(model, tmp_path / "lora")
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path / "lora")).eval()
    torch.testing.assert_close(run(theirs), run(model), atol=1e-5, rtol=1e-5)
