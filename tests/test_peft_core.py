"""Attach, switch, disable, merge, detach: the invariants of `nagner.peft` on tiny real models."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from tiny_models import tiny_bert, tiny_gpt2, tiny_llama
from torch import nn
from transformers.pytorch_utils import Conv1D

from nagner.peft import (
    AdaptedLayer,
    LoraConfig,
    active_adapters,
    adapted_layers,
    adapter_names,
    attach,
    detach,
    disable,
    merge,
    merge_and_unload,
    parameter_counts,
    set_active,
    summary,
    unmerge,
)

HIDDEN, FFN = 64, 128


def tokens(batch: int = 3, length: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 100, (batch, length), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def run(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    output = model(input_ids=ids)
    return output.logits if hasattr(output, "logits") else output.last_hidden_state


@torch.no_grad()
def randomize(model: nn.Module, name: str, seed: int, std: float = 0.1) -> None:
    """Give adapter ``name`` non-zero weights (B starts at zero, which would hide every bug)."""
    generator = torch.Generator().manual_seed(seed)
    for layer in adapted_layers(model).values():
        if name in layer.adapters:
            for parameter in layer.adapters[name].parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


def host_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every host weight (what merging changes), cloned, keyed by host module name."""
    return {name: layer.weight.detach().clone() for name, layer in adapted_layers(model).items()}


def assert_equal_tensors(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), key


QV = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"])
ALL = LoraConfig(r=2, lora_alpha=4, target_modules="all-linear")


# ----------------------------------------------------------------------------- attach / switch


@pytest.mark.parametrize("build", [tiny_bert, tiny_gpt2, tiny_llama])
def test_a_fresh_adapter_changes_no_output_bit(build):
    model = build()
    ids = tokens()
    before = run(model, ids)
    attach(model, LoraConfig(r=4, lora_alpha=16, target_modules="all-linear"))
    assert torch.equal(run(model, ids), before)


def test_two_named_adapters_switch_and_sum_when_both_active():
    model = tiny_bert()
    ids = tokens()
    base = run(model, ids)
    attach(model, QV, "a")
    attach(model, LoraConfig(r=8, lora_alpha=8, target_modules=["value", "output.dense"]), "b")
    randomize(model, "a", seed=1)
    randomize(model, "b", seed=2)
    assert adapter_names(model) == ["a", "b"] and active_adapters(model) == ["b"]
    out_b = run(model, ids)
    set_active(model, "a")
    out_a = run(model, ids)
    assert not torch.allclose(out_a, out_b, atol=1e-3) and not torch.allclose(out_a, base, atol=1e-3)

    # both active = one model whose weights carry ΔW_a + ΔW_b
    set_active(model, ["a", "b"])
    both = run(model, ids)
    reference = tiny_bert()
    with torch.no_grad():
        for name, layer in adapted_layers(model).items():
            delta = sum(layer.adapters[n].delta_weight() for n in ("a", "b") if n in layer.adapters)
            reference.get_submodule(name).weight.add_(delta)
    torch.testing.assert_close(both, run(reference, ids), rtol=1e-5, atol=1e-5)

    set_active(model, [])
    assert torch.equal(run(model, ids), base)
    with pytest.raises(KeyError, match="'c'"):
        set_active(model, "c")


def test_disable_runs_the_base_model_even_with_merged_adapters():
    model = tiny_bert()
    ids = tokens()
    base = run(model, ids)
    attach(model, QV)
    randomize(model, "default", seed=3)
    adapted = run(model, ids)
    with disable(model):
        assert torch.equal(run(model, ids), base)
    torch.testing.assert_close(run(model, ids), adapted, rtol=0, atol=0)

    merge(model)
    merged_weights = host_weights(model)
    with disable(model):
        torch.testing.assert_close(run(model, ids), base, rtol=1e-6, atol=1e-6)
        assert all(layer.merged == [] for layer in adapted_layers(model).values())
    assert_equal_tensors(host_weights(model), merged_weights)
    assert all(layer.merged == ["default"] for layer in adapted_layers(model).values())


def test_detach_restores_the_original_modules_and_state_dict():
    model = tiny_bert()
    ids = tokens()
    originals = dict(model.named_modules())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    base = run(model, ids)
    attach(model, QV, "a")
    attach(model, ALL, "b")
    randomize(model, "a", seed=1)
    randomize(model, "b", seed=2)
    set_active(model, ["a", "b"])
    merge(model)

    detach(model, "b")  # layers that only "b" covered are plain again; q and v keep "a"
    assert adapter_names(model) == ["a"]
    assert set(adapted_layers(model)) == {
        f"encoder.layer.{i}.attention.self.{m}" for i in (0, 1) for m in ("query", "value")
    }
    assert all(layer.merged == ["a"] for layer in adapted_layers(model).values())

    detach(model)
    assert dict(model.named_modules()) == originals  # the very same module objects
    assert not hasattr(model, "nagner_peft")
    after = model.state_dict()
    assert list(after) == list(state)
    for key in state:  # merged adapters were subtracted again: equal to a rounding step
        torch.testing.assert_close(after[key], state[key], rtol=0, atol=1e-6, msg=key)
    torch.testing.assert_close(run(model, ids), base, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------ merging


def test_merge_keeping_the_originals_unmerges_bit_exactly_with_two_adapters_and_partial_unmerge():
    model = tiny_bert()
    ids = tokens()
    attach(model, QV, "a")
    attach(model, LoraConfig(r=3, lora_alpha=5, target_modules=["value", "key"]), "b")
    randomize(model, "a", seed=1, std=0.3)
    randomize(model, "b", seed=2, std=0.3)
    set_active(model, ["a", "b"])
    original = host_weights(model)
    unmerged = run(model, ids)

    merge(model, keep_original=True)
    assert any(not torch.equal(original[k], w) for k, w in host_weights(model).items())
    torch.testing.assert_close(run(model, ids), unmerged, rtol=1e-5, atol=1e-5)

    unmerge(model, ["a"])  # "b" stays merged: the weights equal merging "b" alone
    only_b = host_weights(model)
    torch.testing.assert_close(run(model, ids), unmerged, rtol=1e-5, atol=1e-5)
    unmerge(model)
    assert_equal_tensors(host_weights(model), original)
    merge(model, ["b"], keep_original=True)
    assert_equal_tensors(host_weights(model), only_b)
    unmerge(model)
    assert_equal_tensors(host_weights(model), original)
    assert torch.equal(run(model, ids), unmerged)

    with pytest.raises(ValueError, match="inactive"):
        set_active(model, "a")
        merge(model, ["b"])


def test_merge_and_unload_leaves_plain_modules_with_the_same_outputs():
    model = tiny_llama()
    ids = tokens()
    keys = list(model.state_dict())
    attach(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    randomize(model, "default", seed=4)
    adapted = run(model, ids)
    result = merge_and_unload(model)
    assert result is model
    assert not adapted_layers(model) and not hasattr(model, "nagner_peft")
    assert type(model.model.layers[0].self_attn.q_proj) is nn.Linear
    assert list(model.state_dict()) == keys
    torch.testing.assert_close(run(model, ids), adapted, rtol=1e-5, atol=1e-5)


def test_gpt2_conv1d_merge_adds_the_transposed_delta():
    model = tiny_gpt2()
    ids = tokens()
    attach(model, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"]))
    randomize(model, "default", seed=5)
    layer = model.transformer.h[0].attn.c_attn
    assert isinstance(layer.base_layer, Conv1D) and (layer.in_features, layer.out_features) == (32, 96)
    original = layer.weight.detach().clone()  # Conv1D stores (in, out)
    unmerged = run(model, ids)
    merge(model)
    adapter = layer.adapters["default"]
    expected = original + adapter.scaling * (adapter.lora_B.weight @ adapter.lora_A.weight).T
    torch.testing.assert_close(layer.weight.detach(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(run(model, ids), unmerged, rtol=1e-5, atol=1e-5)
    unmerge(model)
    torch.testing.assert_close(layer.weight.detach(), original, rtol=0, atol=1e-6)


def held_bytes(model: nn.Module) -> int:
    """Bytes of every distinct tensor storage the model's modules hold (parameters, buffers and
    tensors kept as plain attributes)."""
    storages = {}
    for module in model.modules():
        tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        tensors += [value for value in vars(module).values() if isinstance(value, torch.Tensor)]
        for tensor in tensors:
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_merge_holds_no_copy_of_the_weights_and_unmerge_undoes_it(dtype):
    """Review B4: merging kept a full copy of every merged weight (13 GB for a 7B model in bf16)."""
    model = tiny_llama().to(dtype)
    ids = tokens()
    attach(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    randomize(model, "default", seed=3)
    original, unmerged = host_weights(model), run(model, ids)
    held = held_bytes(model)
    merge(model)
    assert held_bytes(model) == held
    unmerge(model)
    # W + ΔW − ΔW rounds: each weight comes back within one rounding step of its dtype
    step = torch.finfo(dtype).eps
    for name, weight in host_weights(model).items():
        torch.testing.assert_close(weight, original[name], rtol=step, atol=step * 0.1, msg=name)
    if dtype == torch.float32:  # (in bf16 a weight one rounding step off moves logits by ~1e-3)
        torch.testing.assert_close(run(model, ids), unmerged, rtol=1e-5, atol=1e-5)


def test_many_merge_unmerge_cycles_do_not_drift():
    model = tiny_bert()
    attach(model, ALL)
    randomize(model, "default", seed=4)
    original = host_weights(model)
    for _ in range(50):
        merge(model)
        unmerge(model)
    for name, weight in host_weights(model).items():
        assert (weight - original[name]).abs().max() < 1e-6, name


# -------------------------------------------------------------------------- training set-up


def test_only_the_newest_adapter_is_trainable():
    model = tiny_bert()
    attach(model, QV, "a")
    attach(model, QV, "b")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        f"encoder.layer.{i}.attention.self.{m}.adapters.b.lora_{ab}.weight"
        for i in (0, 1)
        for m in ("query", "value")
        for ab in "AB"
    }
    # a training step moves only "b"
    ids = tokens()
    run_with_grad = model(input_ids=ids).last_hidden_state.sum()
    run_with_grad.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if ".adapters.b." not in n)


def test_parameter_counts_match_the_closed_form():
    model = tiny_bert()
    total = sum(p.numel() for p in model.parameters())
    r = 4
    attach(model, QV, "a")
    qv = 2 * 2 * r * (HIDDEN + HIDDEN)  # 2 layers × (query, value) × r·(d_in + d_out)
    assert parameter_counts(model) == {"trainable": qv, "total": total + qv, "adapter": qv}
    attach(model, ALL, "b")
    r = 2
    per_layer = 4 * r * (HIDDEN + HIDDEN) + r * (HIDDEN + FFN) + r * (FFN + HIDDEN)  # q,k,v,o + up + down
    everything = 2 * per_layer + r * (HIDDEN + HIDDEN)  # + pooler
    assert parameter_counts(model) == {
        "trainable": everything,
        "total": total + qv + everything,
        "adapter": qv + everything,
    }


def test_summary_lists_every_adapted_module_and_the_counts():
    model = tiny_bert()
    attach(model, QV, "a")
    attach(model, LoraConfig(r=2, target_modules=["value"]), "b", activate=False)
    merge(model)
    text = summary(model)
    lines = text.splitlines()
    assert lines[0] == "BertModel"
    assert "├── encoder.layer.0.attention.self.query (Linear 64→64)" in lines
    assert "│   └── a [LoraAdapter; active, merged] lora_A.weight:[4, 64], lora_B.weight:[64, 4]" in lines
    assert "│   └── b [LoraAdapter] lora_A.weight:[2, 64], lora_B.weight:[64, 2]" in lines
    assert sum(line.startswith("├── ") for line in lines) == 4
    counts = parameter_counts(model)
    assert lines[-1].startswith(f"trainable {counts['trainable']:,} of {counts['total']:,} parameters")
    assert lines[-1].endswith(f"adapters {counts['adapter']:,}")


# -------------------------------------------------------------------------------- LoRA options


def test_rslora_scaling_and_forward():
    model = tiny_bert()
    attach(model, LoraConfig(r=4, lora_alpha=6, use_rslora=True, target_modules=["query"]))
    randomize(model, "default", seed=6)
    layer = model.encoder.layer[0].attention.self.query
    adapter = layer.adapters["default"]
    assert adapter.scaling == pytest.approx(6 / math.sqrt(4))
    x = torch.randn(5, HIDDEN, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = layer.base_layer(x) + 3.0 * x @ (adapter.lora_B.weight @ adapter.lora_A.weight).T
        torch.testing.assert_close(layer(x), expected, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(
            adapter.delta_weight(), 3.0 * adapter.lora_B.weight @ adapter.lora_A.weight
        )
    plain = LoraConfig(r=4, lora_alpha=6, target_modules=["query"])
    assert plain.build_adapter(layer, "query").scaling == pytest.approx(1.5)


def test_rank_and_alpha_patterns_pick_per_module_values():
    model = tiny_bert()
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["query", "value", "output.dense"],
        rank_pattern={"value": 2, r"1\.output\.dense": 4},
        alpha_pattern={"query": 32},
    )
    attach(model, config)
    found = {
        name: (a.r, a.alpha, a.scaling)
        for name, layer in adapted_layers(model).items()
        for a in [layer.adapters["default"]]
    }
    assert found["encoder.layer.0.attention.self.query"] == (8, 32, 4.0)
    assert found["encoder.layer.0.attention.self.value"] == (2, 16, 8.0)
    assert found["encoder.layer.1.output.dense"] == (4, 16, 4.0)
    assert found["encoder.layer.0.output.dense"] == (8, 16, 2.0)
    assert found["encoder.layer.1.attention.output.dense"] == (
        8,
        16,
        2.0,
    )  # "1.attention.output.dense" ≠ "1.output.dense"
    assert model.encoder.layer[0].attention.self.value.adapters["default"].lora_A.weight.shape == (2, HIDDEN)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_host_keeps_a_float32_adapter(dtype):
    model = tiny_llama().to(dtype)
    ids = tokens()
    attach(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    layer = model.model.layers[0].self_attn.q_proj
    assert layer.weight.dtype == dtype
    assert {p.dtype for _, p in layer.adapters.named_parameters()} == {torch.float32}
    randomize(model, "default", seed=7)
    x = torch.randn(2, 32, generator=torch.Generator().manual_seed(0)).to(dtype)
    with torch.no_grad():
        assert layer(x).dtype == dtype
    assert run(model, ids).dtype == dtype
    original = layer.weight.detach().clone()
    merge(model, keep_original=True)
    assert layer.weight.dtype == dtype and not torch.equal(layer.weight, original)
    unmerge(model)
    assert torch.equal(layer.weight, original)


def test_attach_errors_are_actionable():
    model = tiny_bert()
    attach(model, QV, "a")
    with pytest.raises(ValueError, match="attached already"):
        attach(model, QV, "a")
    with pytest.raises(ValueError, match="no dots"):
        attach(model, QV, "a.b")
    with pytest.raises(KeyError, match="'zz'.*attached: a"):
        detach(model, "zz")
    assert isinstance(model.encoder.layer[0].attention.self.query, AdaptedLayer)


def test_copies_are_independent():
    model = tiny_bert()
    attach(model, QV)
    twin = copy.deepcopy(model)
    randomize(twin, "default", seed=8)
    merge(twin)
    ids = tokens()
    assert torch.equal(run(model, ids), run(tiny_bert(), ids))


def test_import_nagner_peft_loads_no_ner_or_qa_module():
    """The adapter library stands on the shared helpers alone (docs/style.md): importing it loads
    nothing of the NER task or of knowledge_qa."""
    import subprocess
    import sys

    code = (
        "import sys, nagner.peft\n"
        "print(sorted(m for m in sys.modules if m.startswith('knowledge_qa') or "
        "(m.startswith('nagner.') and not m.startswith('nagner.peft'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = eval(out)  # noqa: S307 (our own printout: a list of module names)
    assert "nagner.common.lazy_exports" in loaded  # the package's import plumbing: proves the check sees modules
    assert [m for m in loaded if not m.startswith("nagner.common")] == []
