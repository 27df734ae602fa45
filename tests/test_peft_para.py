"""PARA: exact no-op at attach, default targets, closed-form sizes, vectors once per prompt in
`generate` (Llama, T5), per-sample vectors under padding, save/load, merge refused."""

from __future__ import annotations

import pytest
import torch
from tiny_prompt_models import HIDDEN, greedy, ids, randomize, tiny_bert, tiny_llama, tiny_t5
from torch import nn
from transformers import (
    T5ForConditionalGeneration,
)

from nagner.peft import adapted_layers, adapter_parameters, attach, load_adapter, merge, save_adapter
from nagner.peft.methods.para import ParaConfig
from nagner.peft.prompt import prompt_extras


def count_generator_calls(model: nn.Module) -> list[int]:
    generators = prompt_extras(model)[0].generators
    calls = [0] * len(generators)
    for i, generator in enumerate(generators):
        generator.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


# ------------------------------------------------------------------------------------ attach
@torch.no_grad()
@pytest.mark.parametrize(
    ("build", "targets"),
    [
        (tiny_bert, ["attention.self.query", "attention.self.value", "intermediate.dense"]),
        (tiny_llama, ["self_attn.q_proj", "self_attn.v_proj", "mlp.up_proj"]),
        (tiny_t5, ["SelfAttention.q", "SelfAttention.v", "DenseReluDense.wi"]),
    ],
)
def test_default_targets_and_exact_no_op_at_attach(build, targets):
    model = build()
    inputs = ids(2, 6)
    mask = torch.ones_like(inputs)
    mask[1, 4:] = 0
    extra = {"decoder_input_ids": ids(2, 3, seed=2)} if isinstance(model, T5ForConditionalGeneration) else {}
    before = model(inputs, attention_mask=mask, **extra)[0]
    adapted = attach(model, ParaConfig(r=4))
    picked = [[t for t in targets if n.endswith("." + t)] for n in adapted]
    assert all(len(p) == 1 for p in picked) and {p[0] for p in picked} == set(targets)
    assert len(adapted) == 3 * len(prompt_extras(model)[0].prefixes)  # three targets in every layer
    assert torch.equal(model(inputs, attention_mask=mask, **extra)[0], before)
    assert all(torch.equal(s.value, torch.ones_like(s.value)) for s in prompt_extras(model)[0].signals)


def test_parameter_count_is_the_closed_form():
    model = tiny_bert()
    r, d = 4, HIDDEN
    attach(model, ParaConfig(r=r))
    width = d + d + 64  # query, value, intermediate.dense outputs
    per_layer = d + 12 + (d * r + r) + (r * width + width)
    assert sum(p.numel() for _, p in adapter_parameters(model, "default")) == 2 * per_layer
    model = tiny_llama()
    attach(model, ParaConfig(r=r, pooler="max", activation="gelu"))
    width = d + 16 + 64  # q_proj, v_proj (one key-value head of 16), up_proj
    assert sum(p.numel() for _, p in adapter_parameters(model, "default")) == 2 * (
        (d * r + r) + (r * width + width)
    )


@torch.no_grad()
def test_each_module_reads_its_slice_of_the_layer_vector_by_hand():
    """Layer l's generated vector is the targets' output widths side by side in model order
    (query, value, intermediate.dense of BERT: 32 + 32 + 64), and y_m = (W_m x + b_m) ⊙ v[slice_m]."""
    model = tiny_bert()
    attach(model, ParaConfig(r=4))
    randomize(model, seed=2)
    seen = {}
    for name, layer in adapted_layers(model).items():
        layer.register_forward_hook(lambda module, args, out, name=name: seen.__setitem__(name, (args[0], out)))
    model(ids(3, 5))
    vectors = [signal.value for signal in prompt_extras(model)[0].signals]
    for index, vector in enumerate(vectors):
        assert vector.shape == (3, 32 + 32 + 64)
        layout = {"attention.self.query": (0, 32), "attention.self.value": (32, 64), "intermediate.dense": (64, 128)}
        for module, (start, end) in layout.items():
            name = f"encoder.layer.{index}.{module}"
            x, y = seen[name]
            expected = adapted_layers(model)[name].base_layer(x) * vector[:, None, start:end]
            torch.testing.assert_close(y, expected, rtol=0, atol=1e-6)


def test_merge_raises_a_clear_type_error():
    model = tiny_llama()
    attach(model, ParaConfig())
    with pytest.raises(TypeError, match="cannot be merged"):
        merge(model)


@torch.no_grad()
def test_save_and_load_give_identical_outputs(tmp_path):
    model = tiny_t5()
    attach(model, ParaConfig(r=4, pooler="mean"))
    randomize(model, seed=3)
    inputs, decoder = ids(2, 6), ids(2, 4, seed=2)
    expected = model(inputs, decoder_input_ids=decoder).logits
    save_adapter(model, tmp_path / "para")
    fresh = tiny_t5()
    load_adapter(fresh, tmp_path / "para")
    assert torch.equal(fresh(inputs, decoder_input_ids=decoder).logits, expected)


# ------------------------------------------------------------------------------ generation
@torch.no_grad()
@pytest.mark.parametrize("build", [tiny_llama, tiny_t5])
def test_generate_computes_vectors_once_and_matches_no_cache(build):
    model = build()
    attach(model, ParaConfig(r=4))
    randomize(model, seed=1)
    prompt = ids(2, 6)
    mask = torch.ones_like(prompt)
    mask[1, :2] = 0
    calls = count_generator_calls(model)
    cached = greedy(model, prompt, attention_mask=mask)
    assert calls == [1] * len(calls)
    assert torch.equal(greedy(model, prompt, attention_mask=mask, use_cache=False), cached)
    assert calls == [2] * len(calls)
    randomize(model, seed=2)  # the vectors matter: other generator weights, other tokens
    assert not torch.equal(greedy(model, prompt, attention_mask=mask), cached)


# ------------------------------------------------------------------------ per-sample vectors
@torch.no_grad()
def test_bert_batched_vectors_equal_one_by_one_with_right_padding():
    model = tiny_bert()
    attach(model, ParaConfig(r=4))
    randomize(model, seed=5)
    lengths = [6, 3]
    batch = ids(2, 6)
    mask = (torch.arange(6) < torch.tensor(lengths)[:, None]).long()
    out = model(batch, attention_mask=mask).last_hidden_state
    vectors = [s.value.clone() for s in prompt_extras(model)[0].signals]
    for row, n in enumerate(lengths):
        alone = model(batch[row : row + 1, :n]).last_hidden_state
        assert torch.allclose(out[row, :n], alone[0], atol=1e-5)
        for layer, signal in enumerate(prompt_extras(model)[0].signals):
            assert torch.allclose(vectors[layer][row], signal.value[0], atol=1e-6)


@torch.no_grad()
def test_llama_batched_generate_equals_one_by_one_with_left_padding():
    model = tiny_llama()
    attach(model, ParaConfig(r=4))
    randomize(model, seed=6)
    lengths = [6, 3]
    batch = ids(2, 6)
    mask = (torch.arange(6) >= 6 - torch.tensor(lengths)[:, None]).long()
    together = greedy(model, batch, attention_mask=mask)
    for row, n in enumerate(lengths):
        assert torch.equal(together[row, 6:], greedy(model, batch[row : row + 1, 6 - n :])[0, n:])
