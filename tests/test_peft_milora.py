"""MiLoRA: no-op at attach, closed-form sizes, gates and balance loss by hand, routing once per
prompt in `generate` (Llama, T5), per-sample routing under padding, save/load, training."""

from __future__ import annotations

import pytest
import torch
from tiny_prompt_models import HIDDEN, VOCAB, greedy, ids, randomize, tiny_bert, tiny_llama, tiny_t5
from torch import nn
from transformers import (
    BertConfig,
    BertForTokenClassification,
    T5ForConditionalGeneration,
    TrainingArguments,
)

from nagner.peft import (
    LoraConfig,
    adapted_layers,
    adapter_parameters,
    attach,
    auxiliary_loss,
    config_from_dict,
    load_adapter,
    merge,
    save_adapter,
)
from nagner.peft.methods.milora import MiLoraConfig, balance_loss, top_k_gates
from nagner.peft.prompt import prompt_extras, prompt_mask
from nagner.peft.trainer import AdapterTrainer


def count_router_calls(model: nn.Module) -> list[int]:
    calls = [0] * len(prompt_extras(model)[0].routers)
    for i, router in enumerate(prompt_extras(model)[0].routers):
        router.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


# ------------------------------------------------------------------------------------ attach
@torch.no_grad()
@pytest.mark.parametrize("build", [tiny_bert, tiny_llama, tiny_t5])
def test_attaching_changes_no_output_bit(build):
    model = build()
    inputs = ids(2, 6)
    mask = torch.ones_like(inputs)
    mask[1, 4:] = 0
    extra = {"decoder_input_ids": ids(2, 3, seed=2)} if isinstance(model, T5ForConditionalGeneration) else {}
    before = model(inputs, attention_mask=mask, **extra)[0]
    attach(model, MiLoraConfig(r=4))
    assert torch.equal(model(inputs, attention_mask=mask, **extra)[0], before)


def test_parameter_count_is_the_closed_form():
    model = tiny_bert()
    r, d, ffn = 4, HIDDEN, 64
    attach(model, MiLoraConfig(r=r))
    experts = 4 * r * (d + d) + r * (d + ffn) + r * (ffn + d)  # q, k, v, o; intermediate; output
    router = d + 12 + d * 6  # self-attention pooler, rational activation, W_r over 6 experts
    assert sum(p.numel() for _, p in adapter_parameters(model, "default")) == 2 * (experts + router)
    model = tiny_llama()
    attach(model, MiLoraConfig(r=r, target_modules=["q_proj", "v_proj"], pooler="mean", activation="gelu"))
    kv = 16  # one key-value head of width 16
    assert sum(p.numel() for _, p in adapter_parameters(model, "default")) == 2 * (
        r * (d + d) + r * (d + kv) + d * 2
    )


def test_top_k_gates_and_balance_loss_by_hand():
    probabilities = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.7, 0.2, 0.1], [0.2, 0.2, 0.6]])
    gates = top_k_gates(probabilities, 2, weighting="probability")
    assert torch.allclose(gates[0], torch.tensor([0.5 / 0.8, 0.3 / 0.8, 0.0]))
    assert torch.allclose(gates[1], torch.tensor([0.0, 0.6 / 0.9, 0.3 / 0.9]))
    # "selection" (the default): the selected experts run at full strength (value 1) and the gradient
    # is that of the renormalised probabilities (straight through)
    logits = probabilities.log().requires_grad_(True)
    selected = top_k_gates(logits.softmax(-1), 2)
    assert torch.equal(selected.detach(), torch.tensor([[1.0, 1, 0], [0, 1, 1], [1, 1, 0], [1, 0, 1]]))
    weights = torch.arange(12.0).view(4, 3)
    (grad_selection,) = torch.autograd.grad((selected * weights).sum(), logits)
    (grad_probability,) = torch.autograd.grad(
        (top_k_gates(logits.softmax(-1), 2, weighting="probability") * weights).sum(), logits
    )
    assert torch.allclose(grad_selection, grad_probability) and grad_selection.abs().sum() > 0
    # top-1: experts 0, 1, 0, 2 → f = (1/2, 1/4, 1/4); p̂ = (0.375, 0.325, 0.3)
    expected = 3 * (0.5 * 0.375 + 0.25 * 0.325 + 0.25 * 0.3)
    assert balance_loss(probabilities).item() == pytest.approx(expected)
    assert balance_loss(torch.full((4, 3), 1 / 3)).item() == pytest.approx(1.0)  # balanced
    assert balance_loss(torch.eye(3)[[0, 0]]).item() == pytest.approx(3.0)  # one expert takes all


def test_auxiliary_loss_is_lambda_times_the_layer_sum_and_top_k_is_capped():
    model = tiny_llama()
    attach(model, MiLoraConfig(r=2, top_k=5, target_modules=["q_proj", "v_proj"], balance_loss_weight=0.1))
    randomize(model)
    model(ids(3, 5))
    routing = prompt_extras(model)[0]
    assert routing.top_k == [2, 2]
    expected = 0.1 * sum(balance_loss(p) for p in routing._probabilities)
    assert torch.allclose(auxiliary_loss(model), expected)
    assert all(torch.equal(g.sum(-1), torch.full((3,), 2.0)) for g in routing.last_gates())  # k = 2 selected


def bert_modules_in_order(model: nn.Module, layer: int) -> list[str]:
    """The six linear modules of a BERT layer in model order: the experts of its router."""
    prefix = f"encoder.layer.{layer}."
    return [name for name in adapted_layers(model) if name.startswith(prefix)]


@torch.no_grad()
def test_k_equal_to_the_number_of_experts_is_plain_lora():
    """The paper: with every expert active MiLoRA reduces to vanilla LoRA (review B5: it differed by
    0.52 when the experts were weighted by their probabilities)."""
    model = tiny_bert()
    attach(model, MiLoraConfig(r=4, lora_alpha=8, top_k=6))
    randomize(model)
    names = list(adapted_layers(model))
    lora = tiny_bert()
    attach(lora, LoraConfig(r=4, lora_alpha=8, target_modules=names))
    for name, layer in adapted_layers(model).items():
        expert, twin = layer.adapters["default"], adapted_layers(lora)[name].adapters["default"]
        twin.lora_A.weight.copy_(expert.lora_A.weight)
        twin.lora_B.weight.copy_(expert.lora_B.weight)
    inputs = ids(3, 7)
    torch.testing.assert_close(model(inputs).last_hidden_state, lora(inputs).last_hidden_state, rtol=0, atol=1e-5)


@torch.no_grad()
def test_each_router_column_feeds_its_module_by_hand():
    """Expert j of layer l is the j-th adapted module of that layer in model order: y = W x + b +
    gate[:, j] · s · B A x, with the gates of that layer's router; only the k selected experts run."""
    model = tiny_bert()
    attach(model, MiLoraConfig(r=4, lora_alpha=12, top_k=2, balance_loss_weight=0.0))
    randomize(model, seed=3)
    seen = {}
    for name, layer in adapted_layers(model).items():
        layer.register_forward_hook(lambda module, args, out, name=name: seen.__setitem__(name, (args[0], out)))
    model(ids(4, 6))
    routing = prompt_extras(model)[0]
    for index, gates in enumerate(routing.last_gates()):  # (4, 6) per layer
        probabilities = routing._probabilities[index]
        chosen = probabilities.topk(2, dim=-1).indices
        assert torch.equal(gates, torch.zeros(4, 6).scatter(-1, chosen, 1.0))
        for position, name in enumerate(bert_modules_in_order(model, index)):
            x, y = seen[name]
            layer = adapted_layers(model)[name]
            expert = layer.adapters["default"]
            delta = (x @ expert.lora_A.weight.T @ expert.lora_B.weight.T) * (12 / 4)
            expected = layer.base_layer(x) + gates[:, position, None, None] * delta
            torch.testing.assert_close(y, expected, rtol=0, atol=1e-5)


def test_an_expert_runs_only_on_the_rows_that_selected_it():
    model = tiny_bert()
    attach(model, MiLoraConfig(r=4, top_k=1))
    randomize(model, seed=5)
    rows = {}
    for name, layer in adapted_layers(model).items():
        layer.adapters["default"].lora_A.register_forward_hook(
            lambda module, args, out, name=name: rows.__setitem__(name, args[0].shape[0])
        )
    with torch.no_grad():
        model(ids(6, 5))
    routing = prompt_extras(model)[0]
    for index, gates in enumerate(routing.last_gates()):
        for position, name in enumerate(bert_modules_in_order(model, index)):
            selecting = int(gates[:, position].ne(0).sum())
            assert rows.get(name, 0) == selecting, name


def test_the_router_learns_from_the_task_loss_through_the_selection():
    model = tiny_bert()
    attach(model, MiLoraConfig(r=4, top_k=2, balance_loss_weight=0.0))
    randomize(model, seed=6)
    model(ids(3, 5)).last_hidden_state.pow(2).sum().backward()
    routers = prompt_extras(model)[0].routers
    assert all(router.gate.weight.grad.abs().sum() > 0 for router in routers)


def test_merge_raises_a_clear_type_error():
    model = tiny_bert()
    attach(model, MiLoraConfig(r=2))
    with pytest.raises(TypeError, match="cannot be merged"):
        merge(model)


@torch.no_grad()
def test_files_written_before_gate_weighting_existed_load_as_probability_weighted():
    saved = MiLoraConfig(r=4).to_dict()
    del saved["gate_weighting"]
    assert config_from_dict(saved).gate_weighting == "probability"
    assert config_from_dict(MiLoraConfig(r=4).to_dict()).gate_weighting == "selection"
    with pytest.raises(ValueError, match="gate_weighting"):
        MiLoraConfig(gate_weighting="soft")


def test_save_and_load_give_identical_outputs(tmp_path):
    model = tiny_llama()
    attach(model, MiLoraConfig(r=2, top_k=2, pooler="last"))
    randomize(model, seed=3)
    inputs = ids(2, 6)
    expected = model(inputs).logits
    save_adapter(model, tmp_path / "milora")
    fresh = tiny_llama()
    load_adapter(fresh, tmp_path / "milora")
    assert torch.equal(fresh(inputs).logits, expected)


# ------------------------------------------------------------------------------ generation
@torch.no_grad()
def test_llama_generate_routes_once_and_matches_recomputing_from_scratch():
    model = tiny_llama()
    attach(model, MiLoraConfig(r=4, top_k=2))
    randomize(model, seed=1)
    prompt = ids(2, 6)
    mask = torch.ones_like(prompt)
    mask[1, :2] = 0  # left padding
    calls = count_router_calls(model)
    cached = greedy(model, prompt, attention_mask=mask)
    assert calls == [1, 1]
    assert torch.equal(greedy(model, prompt, attention_mask=mask, use_cache=False), cached)
    assert calls == [2, 2]
    # by hand: every step reruns the whole sequence, routing on the prompt tokens only
    sequence, attention = prompt, mask
    for _ in range(5):
        prompt_only = torch.cat([mask, torch.zeros(2, sequence.shape[1] - 6, dtype=mask.dtype)], 1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        with prompt_mask(model, prompt_only):
            logits = model(sequence, attention_mask=attention, position_ids=positions).logits
        sequence = torch.cat([sequence, logits[:, -1].argmax(-1, keepdim=True)], 1)
        attention = torch.cat([attention, torch.ones(2, 1, dtype=mask.dtype)], 1)
    assert torch.equal(sequence, cached)


@torch.no_grad()
def test_t5_generate_routes_once_per_stack_and_matches_no_cache():
    model = tiny_t5()
    attach(model, MiLoraConfig(r=4, top_k=2))
    randomize(model, seed=2)
    routing = prompt_extras(model)[0]
    assert routing.prefixes == ["encoder.block.0", "encoder.block.1", "decoder.block.0", "decoder.block.1"]
    prompt = ids(2, 7)
    mask = torch.ones_like(prompt)
    mask[0, 5:] = 0
    calls = count_router_calls(model)
    cached = greedy(model, prompt, attention_mask=mask)
    assert calls == [1, 1, 1, 1]
    assert torch.equal(greedy(model, prompt, attention_mask=mask, use_cache=False), cached)
    # the decoder routers pool the encoder output: teacher forcing over the generated tokens agrees
    logits = model(prompt, attention_mask=mask, decoder_input_ids=cached[:, :-1]).logits
    assert torch.equal(logits.argmax(-1), cached[:, 1:])


@torch.no_grad()
def test_beam_search_keeps_one_routing_per_prompt():
    model = tiny_llama()
    attach(model, MiLoraConfig(r=4, top_k=2))
    randomize(model, seed=4)
    prompt = ids(2, 5)
    calls = count_router_calls(model)
    beams = greedy(model, prompt, num_beams=3, num_return_sequences=3)
    assert calls == [1, 1] and beams.shape[0] == 6
    gates = prompt_extras(model)[0].last_gates()
    assert all(torch.equal(g, g[::3].repeat_interleave(3, 0)) for g in gates)
    assert torch.equal(greedy(model, prompt, num_beams=3, num_return_sequences=3, use_cache=False), beams)


# ------------------------------------------------------------------------ per-sample routing
@torch.no_grad()
def test_bert_batched_routing_equals_one_by_one_with_right_padding():
    model = tiny_bert()
    attach(model, MiLoraConfig(r=4, top_k=2))
    randomize(model, seed=5)
    lengths = [6, 4, 2]
    batch = ids(3, 6)
    mask = (torch.arange(6) < torch.tensor(lengths)[:, None]).long()
    out = model(batch, attention_mask=mask).last_hidden_state
    gates = [g.clone() for g in prompt_extras(model)[0].last_gates()]
    assert not torch.equal(gates[0][0], gates[0][1]) or not torch.equal(gates[0][1], gates[0][2])
    for row, n in enumerate(lengths):
        alone = model(batch[row : row + 1, :n]).last_hidden_state
        assert torch.allclose(out[row, :n], alone[0], atol=1e-5)
        for layer, g in enumerate(prompt_extras(model)[0].last_gates()):
            assert torch.allclose(gates[layer][row], g[0], atol=1e-6)


@torch.no_grad()
def test_llama_batched_generate_equals_one_by_one_with_left_padding():
    model = tiny_llama()
    attach(model, MiLoraConfig(r=4, top_k=2))
    randomize(model, seed=6)
    lengths = [6, 3]
    batch = ids(2, 6)
    mask = (torch.arange(6) >= 6 - torch.tensor(lengths)[:, None]).long()
    together = greedy(model, batch, attention_mask=mask)
    gates = [g.clone() for g in prompt_extras(model)[0].last_gates()]
    for row, n in enumerate(lengths):
        alone = greedy(model, batch[row : row + 1, 6 - n :])
        assert torch.equal(together[row, 6:], alone[0, n:])
        for layer, g in enumerate(prompt_extras(model)[0].last_gates()):
            assert torch.allclose(gates[layer][row], g[0], atol=1e-6)


# -------------------------------------------------------------------------------- training
class _Tokens(torch.utils.data.Dataset):
    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.input_ids = torch.randint(3, VOCAB, (8, 8), generator=generator)
        self.labels = torch.randint(0, 3, (8, 8), generator=generator)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[i], "labels": self.labels[i]}


def test_adapter_trainer_trains_the_router_and_lowers_the_loss(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
    )
    model = BertForTokenClassification(config)
    nn.init.normal_(model.classifier.weight, std=1.0)  # the frozen head must let hidden-state changes show
    attach(model, MiLoraConfig(r=4, top_k=2))
    data = _Tokens()
    router = {n: p.detach().clone() for n, p in adapter_parameters(model, "default") if ".routers." in n}

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            return model(input_ids=data.input_ids, labels=data.labels).loss.item()

    before = loss()
    arguments = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=30,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
    )
    AdapterTrainer(model=model, args=arguments, train_dataset=data).train()
    assert loss() < 0.7 * before
    after = dict(adapter_parameters(model, "default"))
    assert any(not torch.equal(after[n], value) for n, value in router.items() if n.endswith("gate.weight"))
    assert any(not torch.equal(after[n], value) for n, value in router.items() if n.endswith("numerator"))


@torch.no_grad()
@pytest.mark.parametrize("method", ["milora", "para"])
def test_generate_from_a_filled_cache_never_reuses_another_requests_routing(method):
    """Review B2: a request that starts from a prefix cache used to read the routing the previous
    request left behind. It has no prompt to route on, so it must fail and say why."""
    from transformers import DynamicCache

    from nagner.peft.methods.para import ParaConfig

    model = tiny_llama()
    attach(model, MiLoraConfig(r=4, top_k=2) if method == "milora" else ParaConfig(r=4))
    randomize(model, seed=1)
    greedy(model, ids(1, 6, seed=1))  # request 1 routes on its own prompt
    second = ids(1, 6, seed=7)
    cache = DynamicCache(config=model.config)
    model(second[:, :5], past_key_values=cache, use_cache=True)  # a prefix cache filled outside generate
    with pytest.raises(RuntimeError, match="filled key/value cache"):
        model.generate(second, past_key_values=cache, max_new_tokens=2, do_sample=False)
    assert torch.equal(greedy(model, second), greedy(model, second))  # an ordinary request still works
