"""LoRETTA_rep and LoRETTA_adp: exact no-op start, training, merge, `peft` export, placement,
parameter counts, save/load round trips."""

from __future__ import annotations

import copy
from pathlib import Path

import peft
import pytest
import torch
from transformers import BertConfig, BertModel

from nagner.peft import (
    adapted_layers,
    adapter_batch,
    adapter_config,
    attach,
    disable,
    export_peft_lora,
    load_adapter,
    load_config,
    merge,
    save_adapter,
    unmerge,
)
from nagner.peft.methods.loretta import (
    LorettaAdpAdapter,
    LorettaAdpConfig,
    LorettaRepAdapter,
    LorettaRepConfig,
)


def tiny_bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, vocab_size=100
    )
    return BertModel(config).eval()


def tt_count(layer) -> int:
    """Σ r_{k-1}·n_k·r_k over the modes n_k."""
    r = layer.ranks
    return sum(r[k] * n * r[k + 1] for k, n in enumerate(layer.shape))


def randomize(model: torch.nn.Module, name: str) -> None:
    """Make every adapter's zero core non-zero, so the delta is not 0."""
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in adapted_layers(model).values():
            adapter = layer.adapters[name]
            last = adapter.lora_B if isinstance(adapter, LorettaRepAdapter) else adapter.up
            last.cores[-1].normal_(std=0.5)
            if last.bias is not None:
                last.bias.normal_(std=0.1)


IDS = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(0))
REP = LorettaRepConfig(target_modules=["query", "value"], r=8, lora_alpha=16, lora_dropout=0.0)


def out(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).last_hidden_state


# ----------------------------------------------------------------------------------- LoRETTA_rep
def test_rep_is_an_exact_noop_at_attach() -> None:
    model = tiny_bert()
    before = out(model)
    attach(model, LorettaRepConfig(target_modules=["query", "value", "intermediate.dense"]))
    assert torch.equal(out(model), before)
    adapter = adapted_layers(model)["encoder.layer.0.attention.self.query"].adapters["default"]
    assert isinstance(adapter, LorettaRepAdapter) and adapter.mergeable and adapter.lora_family
    assert adapter.weight_A().abs().sum() > 0  # A random, B exactly zero
    assert torch.count_nonzero(adapter.weight_B()) == 0


def test_rep_trains_every_core() -> None:
    model = tiny_bert()
    model.train()
    attach(model, REP)
    adapter = adapted_layers(model)["encoder.layer.1.attention.self.value"].adapters["default"]
    start = {n: p.detach().clone() for n, p in adapter.named_parameters()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(3):
        optimizer.zero_grad()
        model(IDS).last_hidden_state.pow(2).mean().backward()
        if step == 0:  # only the zero core moves first (everything else is multiplied by it)
            assert adapter.lora_B.cores[-1].grad.abs().sum() > 0
            assert adapter.lora_A.cores[0].grad.abs().sum() == 0
        optimizer.step()
    for name, parameter in adapter.named_parameters():
        assert not torch.equal(parameter, start[name]), name
    assert adapter.lora_A.cores[0].grad.abs().sum() > 0


def test_rep_merged_equals_unmerged_and_unmerge_undoes_it() -> None:
    model = tiny_bert()
    attach(model, REP)
    randomize(model, "default")
    weight = model.encoder.layer[0].attention.self.query.weight.detach().clone()
    unmerged = out(model)
    merge(model)
    torch.testing.assert_close(out(model), unmerged, rtol=0, atol=1e-5)
    assert not torch.equal(model.encoder.layer[0].attention.self.query.weight, weight)
    unmerge(model)
    torch.testing.assert_close(model.encoder.layer[0].attention.self.query.weight.detach(), weight, rtol=0, atol=1e-6)


def test_rep_export_loads_in_real_peft_with_identical_outputs(tmp_path: Path) -> None:
    model = tiny_bert()
    base_copy = copy.deepcopy(model)
    attach(model, REP)
    randomize(model, "default")
    ours = out(model)
    assert not torch.allclose(ours, out(base_copy))
    export_peft_lora(model, tmp_path / "lora")
    loaded = peft.PeftModel.from_pretrained(base_copy, str(tmp_path / "lora")).eval()
    with torch.no_grad():
        theirs = loaded(input_ids=IDS).last_hidden_state
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)


def test_rep_in_a_mixed_batch_equals_running_alone() -> None:
    model = tiny_bert()
    attach(model, REP)
    randomize(model, "default")
    alone = out(model)
    with adapter_batch(model, ["default", None]):
        mixed = out(model)
    with disable(model):
        base = out(model)
    torch.testing.assert_close(mixed[0], alone[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(mixed[1], base[1], rtol=0, atol=1e-5)


def test_rep_parameter_count_is_the_closed_form() -> None:
    model = tiny_bert()
    attach(model, REP)
    adapter = adapted_layers(model)["encoder.layer.0.attention.self.query"].adapters["default"]
    count = sum(p.numel() for p in adapter.parameters())
    assert count == tt_count(adapter.lora_A) + tt_count(adapter.lora_B)
    # 64×8 is not in the official table: 512 = 8·8·8 (16² < 512), 5·8 + 25·8 + 5·8 = 280 per
    # train, 560 for A and B (a dense LoRA: 1,024)
    assert adapter.lora_A.shape == [8, 8, 8] and count == 560


# ----------------------------------------------------------------------------------- LoRETTA_adp
def test_adp_is_a_noop_on_the_host_output_and_cannot_merge(tmp_path: Path) -> None:
    model = tiny_bert()
    before = out(model)
    config = LorettaAdpConfig(target_modules=["intermediate.dense"], bottleneck=16, non_linearity="tanh")
    attach(model, config)
    assert torch.equal(out(model), before)
    layer = adapted_layers(model)["encoder.layer.0.intermediate.dense"]  # 64 → 128
    adapter = layer.adapters["default"]
    assert isinstance(adapter, LorettaAdpAdapter) and not adapter.mergeable and not adapter.lora_family
    assert (adapter.down.in_features, adapter.up.out_features) == (128, 128)  # sits on the output
    with pytest.raises(TypeError, match="cannot be merged"):
        merge(model)
    with pytest.raises(TypeError, match="no plain LoRA form"):
        export_peft_lora(model, tmp_path / "lora")


def test_adp_output_placement_formula() -> None:
    model = tiny_bert()
    attach(model, LorettaAdpConfig(target_modules=["output.dense"], bottleneck=16, scaling=0.5))
    randomize(model, "default")
    layer = adapted_layers(model)["encoder.layer.1.output.dense"]  # FFN output 128 → 64
    adapter = layer.adapters["default"]
    x = torch.randn(3, 128)
    with torch.no_grad():
        y = layer.base_layer(x)
        expected = y + 0.5 * adapter.up(torch.relu(adapter.down(y)))
        torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-6)
    assert "encoder.layer.0.attention.output.dense" in adapted_layers(model)  # both output denses


def test_adp_input_side_placement_formula_and_deep_copies() -> None:
    """The official Llama "mh_adapter": y' = W·(x + s·Up(act(Down(x)))) + b on the host's input."""
    model = tiny_bert()
    config = LorettaAdpConfig(target_modules=["intermediate.dense", "output.dense"], input_side_modules=["intermediate.dense"], bottleneck=16)
    attach(model, config)
    randomize(model, "default")
    layer = adapted_layers(model)["encoder.layer.0.intermediate.dense"]  # 64 → 128, adapter of width 64
    adapter = layer.adapters["default"]
    assert adapter.input_side and (adapter.down.in_features, adapter.up.out_features) == (64, 64)
    assert not adapted_layers(model)["encoder.layer.0.output.dense"].adapters["default"].input_side
    x = torch.randn(3, 64)
    with torch.no_grad():
        changed = x + adapter.up(torch.relu(adapter.down(x)))
        torch.testing.assert_close(layer(x), layer.base_layer(changed), rtol=0, atol=1e-5)
    assert not any("base_layer" in name for name, _ in adapter.named_parameters())  # the host is not its part
    twin = copy.deepcopy(model)
    twin_layer = adapted_layers(twin)["encoder.layer.0.intermediate.dense"]
    with torch.no_grad():
        twin_layer.base_layer.weight.mul_(2.0)
        torch.testing.assert_close(twin_layer(x), twin_layer.base_layer(changed), rtol=0, atol=1e-5)


def test_official_placements_and_the_papers_llama_2_7b_budgets() -> None:
    """Built on the meta device (no weights): LoRETTA_adp for_llama at bottleneck 64, TT rank 5 has
    3 adapters × 32 blocks × (1,100 + 64 + 1,100 + 4,096) = 610,560 parameters; LoRETTA_rep at
    r = 16, TT rank 8 on q and v: 64 × (1,888 + 1,888) = 241,664. With the 65 RMSNorm weights of 4,096
    the paper also trains (266,240): 876,800 ("0.88M") and 507,904 ("0.51M")."""
    from transformers import LlamaConfig, LlamaForCausalLM

    llama_2_7b = LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, vocab_size=32000
    )

    def counts(config):
        with torch.device("meta"):
            model = LlamaForCausalLM(llama_2_7b)
        attach(model, config)
        adapter = sum(p.numel() for n, p in model.named_parameters() if ".adapters." in n)
        norms = sum(p.numel() for n, p in model.named_parameters() if n.endswith("norm.weight"))
        return model, adapter, norms

    model, adapter, norms = counts(LorettaAdpConfig.for_llama())
    assert norms == 266_240
    assert adapter == 610_560 and adapter + norms == 876_800
    block = model.model.layers[0].mlp
    assert [block.gate_proj.adapters["default"].input_side, block.up_proj.adapters["default"].input_side] == [True, True]
    assert not block.down_proj.adapters["default"].input_side
    assert len(adapted_layers(model)) == 3 * 32
    _, adapter, norms = counts(LorettaRepConfig(r=16, tensor_rank=8, target_modules=["q_proj", "v_proj"]))
    assert adapter == 241_664 and adapter + norms == 507_904

    bert = tiny_bert()
    attach(bert, LorettaAdpConfig.for_bert(bottleneck=16))
    assert sorted(adapted_layers(bert)) == [
        f"encoder.layer.{i}.{m}" for i in (0, 1) for m in ("attention.output.dense", "output.dense")
    ]


def test_adp_parameter_count_is_the_closed_form() -> None:
    model = tiny_bert()
    attach(model, LorettaAdpConfig(target_modules=["0.output.dense"], bottleneck=16, scaling="learned"))
    adapter = adapted_layers(model)["encoder.layer.0.output.dense"].adapters["default"]
    count = sum(p.numel() for p in adapter.parameters())
    assert count == tt_count(adapter.down) + 16 + tt_count(adapter.up) + 64 + 1
    # 64·16 = 1,024 = 16·8·8 (16² < 1,024): 5·16 + 25·8 + 5·8 = 320 per train
    assert adapter.down.shape == [16, 8, 8] and count == 320 + 16 + 320 + 64 + 1


def test_adp_trains_the_zero_core_and_the_learned_scale() -> None:
    model = tiny_bert()
    attach(model, LorettaAdpConfig(target_modules=["output.dense"], bottleneck=16, scaling="learned"))
    model(IDS).last_hidden_state.pow(2).mean().backward()
    adapter = adapted_layers(model)["encoder.layer.1.output.dense"].adapters["default"]
    assert adapter.up.cores[-1].grad.abs().sum() > 0
    assert adapter.up.bias.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize(
    "config",
    [REP, LorettaAdpConfig(target_modules=["output.dense"], bottleneck=16, scaling="learned", tensor_rank=3)],
    ids=["rep", "adp"],
)
def test_save_load_round_trip(tmp_path: Path, config) -> None:
    model = tiny_bert()
    attach(model, config)
    randomize(model, "default")
    expected = out(model)
    save_adapter(model, tmp_path / "adapter")
    assert load_config(tmp_path / "adapter") == config
    fresh = tiny_bert()
    load_adapter(fresh, tmp_path / "adapter")
    assert adapter_config(fresh) == config
    assert torch.equal(out(fresh), expected)


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="non_linearity"):
        LorettaAdpConfig(target_modules=["dense"], non_linearity="swish")
    with pytest.raises(ValueError, match="scaling"):
        LorettaAdpConfig(target_modules=["dense"], scaling="auto")
    with pytest.raises(ValueError, match="init_lora_weights"):
        LorettaRepConfig(target_modules=["query"], init_lora_weights="gaussian")
