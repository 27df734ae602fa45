"""SoRA: gate between A and B, exact proximal step (and the official quirk), L1 term, ξ schedule,
pruning to a plain LoRA with the same outputs, export to `peft`, and a `Trainer` run."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel, TrainingArguments

from nagner.peft import (
    LoraConfig,
    adapted_layers,
    adapter_config,
    attach,
    auxiliary_loss,
    export_peft_lora,
    load_adapter,
    merge,
    parameter_counts,
    save_adapter,
    unmerge,
)
from nagner.peft.methods.sora import (
    SoraAdapter,
    SoraConfig,
    prune_sora,
    soft_threshold,
    sora_param_groups,
    sora_proximal_step,
    sparsity_report,
)
from nagner.peft.methods.sora.schedule import SoraCallback, SparsitySchedule
from nagner.peft.trainer import AdapterTrainer

TARGETS = ["query", "value", "intermediate.dense"]  # 6 modules; intermediate.dense is 32→64


def tiny_config() -> BertConfig:
    return BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100
    )


def tiny_bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    return BertModel(tiny_config()).eval()


def inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[2, 5:] = 0
    return {"input_ids": torch.randint(0, 100, (3, 7), generator=generator), "attention_mask": mask}


def run(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs()).last_hidden_state


def sora_model(r: int = 4, seed: int = 3, **kwargs) -> BertModel:
    """Tiny BERT with a SoRA adapter: random non-zero B, and some gates set to zero
    (query of layer 0: ranks 1 and 3; value of layer 1: all ranks)."""
    model = tiny_bert()
    attach(model, SoraConfig(r=r, lora_alpha=8, target_modules=TARGETS, **kwargs))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
        model.encoder.layer[0].attention.self.query.adapters["default"].lora_gate[[1, 3]] = 0.0
        model.encoder.layer[1].attention.self.value.adapters["default"].lora_gate.zero_()
    return model


# ------------------------------------------------------------------------------------ the module
def test_attach_is_a_no_op_and_gates_are_standard_normal() -> None:
    base = tiny_bert()
    model = copy.deepcopy(base)
    attach(model, SoraConfig(r=16, target_modules=TARGETS))
    assert torch.equal(run(model), run(base))
    gates = torch.cat([layer.adapters["default"].lora_gate for layer in adapted_layers(model).values()])
    assert gates.shape == (6 * 16,)
    assert abs(gates.mean().item()) < 0.3 and 0.7 < gates.std().item() < 1.3


def test_parameter_count_is_lora_plus_r_gates() -> None:
    model = tiny_bert()
    r = 4
    attach(model, SoraConfig(r=r, target_modules=["query", "intermediate.dense"]))
    expected = 2 * (r * (32 + 32) + r) + 2 * (r * (32 + 64) + r)
    assert parameter_counts(model)["adapter"] == expected == parameter_counts(model)["trainable"]


def test_exact_soft_threshold_numbers() -> None:
    gate = torch.tensor([-2.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5])
    soft_threshold(gate, 0.5)
    assert gate.tolist() == [-1.5, -0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25, 0.5, 1.0]


def test_official_sequential_threshold_numbers() -> None:
    # (ξ, 2ξ) is shrunk then zeroed; exactly ±ξ stays; 2ξ → ξ stays.
    gate = torch.tensor([-2.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5])
    soft_threshold(gate, 0.5, official=True)
    assert gate.tolist() == [-1.5, 0.0, -0.5, 0.0, 0.0, 0.0, 0.5, 0.0, 0.5, 1.0]


def test_proximal_step_uses_the_config_and_touches_only_gates() -> None:
    model = sora_model(prox_threshold=0.5, official_prox=True)
    gates = {m: a.adapters["default"].lora_gate.detach().clone() for m, a in adapted_layers(model).items()}
    B = model.encoder.layer[0].attention.self.query.adapters["default"].lora_B.weight.detach().clone()
    sora_proximal_step(model)
    for module_name, layer in adapted_layers(model).items():
        expected = gates[module_name].clone()
        soft_threshold(expected, 0.5, official=True)
        assert torch.equal(layer.adapters["default"].lora_gate, expected)
    assert torch.equal(model.encoder.layer[0].attention.self.query.adapters["default"].lora_B.weight, B)
    sora_proximal_step(model, threshold=100.0)
    assert sparsity_report(model).kept_ranks == 0


def test_l1_term_is_normalised_over_all_gate_entries_as_the_official_trainer() -> None:
    """η·Σ|g| over every gate of the model / the number of gate entries (official SoRA; review
    deviation (a): it was a per-module mean, N× stronger for N modules)."""
    model = tiny_bert()
    attach(model, SoraConfig(r=4, target_modules=["query", "value"], rank_pattern={"value": 2}, l1_weight=0.01))
    gates = [layer.adapters["default"].lora_gate for layer in adapted_layers(model).values()]
    assert sorted(g.numel() for g in gates) == [2, 2, 4, 4]  # 12 entries over 4 modules
    expected = 0.01 * sum(float(g.abs().sum()) for g in gates) / 12
    assert float(auxiliary_loss(model)) == pytest.approx(expected, rel=1e-6)
    auxiliary_loss(model).backward()
    for g in gates:  # the same gradient on every entry, whatever its module's rank
        torch.testing.assert_close(g.grad, 0.01 * g.detach().sign() / 12)


def test_a_deep_copy_penalises_its_own_gates() -> None:
    model = sora_model(l1_weight=0.01)
    twin = copy.deepcopy(model)
    before = float(auxiliary_loss(model))
    with torch.no_grad():
        for layer in adapted_layers(twin).values():
            layer.adapters["default"].lora_gate.mul_(3.0)
    assert float(auxiliary_loss(twin)) == pytest.approx(3 * before, rel=1e-6)
    assert float(auxiliary_loss(model)) == pytest.approx(before, rel=1e-6)


def test_l1_term_is_off_at_zero_weight_and_gone_after_pruning() -> None:
    model = tiny_bert()
    attach(model, SoraConfig(r=4, target_modules=["query"], l1_weight=0.0))
    assert auxiliary_loss(model) is None
    model = sora_model(l1_weight=0.01)
    assert auxiliary_loss(model) is not None
    prune_sora(model)  # a plain LoRA now
    assert auxiliary_loss(model) is None


def test_as_lora_drops_zero_ranks_and_merge_round_trip() -> None:
    model = sora_model()
    adapter: SoraAdapter = model.encoder.layer[0].attention.self.query.adapters["default"]
    A, B = adapter.as_lora()
    assert A.shape == (2, 32) and B.shape == (32, 2)
    full = adapter.scaling * adapter.lora_B.weight @ torch.diag(adapter.lora_gate) @ adapter.lora_A.weight
    torch.testing.assert_close(B @ A, full, atol=1e-6, rtol=1e-6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    unmerged = run(model)
    merge(model)
    torch.testing.assert_close(run(model), unmerged, atol=1e-5, rtol=1e-5)
    unmerge(model)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=1e-6, msg=key)


# ------------------------------------------------------------------------------------- pruning
def test_sparsity_report_counts() -> None:
    report = sparsity_report(sora_model())
    assert report.modules["encoder.layer.0.attention.self.query"] == (2, 4)
    assert report.modules["encoder.layer.1.attention.self.value"] == (0, 4)
    assert report.kept_ranks == 6 * 4 - 2 - 4 and report.total_ranks == 24
    widths = {m: 96 if m.endswith("intermediate.dense") else 64 for m in report.modules}  # d_in + d_out
    assert report.total_parameters == sum(4 * w for w in widths.values())
    assert report.kept_parameters == sum(report.modules[m][0] * w for m, w in widths.items())


def test_pruned_equals_unpruned_and_has_the_kept_ranks(tmp_path) -> None:
    model = sora_model()
    before = run(model)
    kept = sparsity_report(model).modules
    config = prune_sora(model)
    assert isinstance(config, LoraConfig) and type(config) is LoraConfig
    torch.testing.assert_close(run(model), before, atol=1e-6, rtol=1e-6)
    layers = adapted_layers(model)
    assert "encoder.layer.1.attention.self.value" not in layers  # every gate was zero: host restored
    for module_name, layer in layers.items():
        adapter = layer.adapters["default"]
        assert type(adapter).__name__ == "LoraAdapter"
        assert adapter.r == kept[module_name][0] and adapter.lora_A.weight.shape == (adapter.r, 32)
        assert adapter.lora_B.weight.shape == (layer.out_features, adapter.r)
        assert adapter.lora_A.weight.requires_grad
    assert config.rank_and_alpha("encoder.layer.0.attention.self.query")[0] == 2
    # Parameters: kept ranks × (d_in + d_out), no gates.
    widths = {m: 96 if m.endswith("intermediate.dense") else 64 for m in kept}
    assert parameter_counts(model)["adapter"] == sum(k * widths[m] for m, (k, _) in kept.items())
    # The pruned adapter saves and loads with its per-module ranks, as ours and as a `peft` LoRA folder.
    save_adapter(model, tmp_path / "pruned")
    fresh = tiny_bert()
    load_adapter(fresh, tmp_path / "pruned")
    torch.testing.assert_close(run(fresh), before, atol=1e-6, rtol=1e-6)
    peft = pytest.importorskip("peft")
    theirs = peft.PeftModel.from_pretrained(tiny_bert(), str(tmp_path / "pruned")).eval()
    torch.testing.assert_close(run(theirs), before, atol=1e-5, rtol=1e-5)


def test_prune_keeps_a_merged_adapter_merged() -> None:
    model = sora_model()
    before = run(model)
    merge(model)
    prune_sora(model)
    assert all(layer.merged == ["default"] for layer in adapted_layers(model).values())
    torch.testing.assert_close(run(model), before, atol=1e-5, rtol=1e-5)


def test_export_loads_in_peft_with_the_same_outputs(tmp_path) -> None:
    peft = pytest.importorskip("peft")
    model = sora_model()
    export_peft_lora(model, tmp_path / "lora")
    theirs = peft.PeftModel.from_pretrained(tiny_bert(), str(tmp_path / "lora")).eval()
    torch.testing.assert_close(run(theirs), run(model), atol=1e-5, rtol=1e-5)


def test_save_load_round_trip_keeps_gates_and_flags(tmp_path) -> None:
    model = sora_model(official_prox=True, l1_weight=0.5)
    save_adapter(model, tmp_path / "sora")
    fresh = tiny_bert()
    load_adapter(fresh, tmp_path / "sora")
    assert adapter_config(fresh).official_prox and adapter_config(fresh).l1_weight == 0.5
    assert torch.equal(run(fresh), run(model))


# ------------------------------------------------------------------------------------- schedule
def test_schedule_thresholds_follow_the_official_rules() -> None:
    linear = SparsitySchedule(start=0.0, end=6e-4, stages=4, first_stage_steps=10, stage_steps=5)
    assert linear.thresholds() == pytest.approx([0.0, 2e-4, 4e-4, 6e-4], abs=1e-15)
    exp = SparsitySchedule(
        start=1e-4, end=1e-2, stages=3, first_stage_steps=0, stage_steps=1, mode="exp_linear"
    )
    assert exp.thresholds() == pytest.approx([1e-4, 1e-3, 1e-2], rel=1e-12)
    log = SparsitySchedule(
        start=0.0, end=1.0, stages=3, first_stage_steps=0, stage_steps=1, mode="log_linear"
    )
    assert log.thresholds() == pytest.approx(
        [0.0, float(torch.tensor((1 + torch.e) / 2).log()), 1.0], rel=1e-6
    )
    assert [linear.stage_at(s) for s in (0, 9, 10, 14, 15, 20, 25, 1000)] == [0, 0, 1, 1, 2, 3, 3, 3]
    assert linear.threshold_at(12) == pytest.approx(2e-4)
    with pytest.raises(ValueError, match="geometric"):
        SparsitySchedule(start=0.0, end=1.0, stages=3, first_stage_steps=0, stage_steps=1, mode="exp_linear")


def test_param_groups_keep_gates_apart() -> None:
    model = sora_model()
    groups = sora_param_groups(model, weight_decay=0.1, gate_lr=0.5)
    assert len(groups[1]["params"]) == 6 and groups[1]["weight_decay"] == 0.0 and groups[1]["lr"] == 0.5
    assert len(groups[0]["params"]) == 12 and groups[0]["weight_decay"] == 0.1


def test_trainer_with_the_callback_zeroes_gates(tmp_path) -> None:
    torch.manual_seed(0)
    config = tiny_config()
    config.num_labels = 2
    model = BertForSequenceClassification(config)
    attach(model, SoraConfig(r=4, target_modules=["query", "value"], l1_weight=0.1))
    generator = torch.Generator().manual_seed(2)
    data = [
        {"input_ids": torch.randint(0, 100, (6,), generator=generator), "labels": torch.tensor(i % 2)}
        for i in range(16)
    ]
    schedule = SparsitySchedule(start=0.0, end=0.2, stages=3, first_stage_steps=2, stage_steps=2)
    callback = SoraCallback(schedule=schedule)
    gates_before = torch.cat(
        [layer.adapters["default"].lora_gate.detach().clone() for layer in adapted_layers(model).values()]
    )
    assert (gates_before == 0).sum() == 0
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=6,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    AdapterTrainer(model=model, args=args, train_dataset=data, callbacks=[callback]).train()
    report = sparsity_report(model)
    assert report.kept_ranks < report.total_ranks  # gates were zeroed
    assert [(s.stage, s.end_step) for s in callback.history] == [(0, 2), (1, 4), (2, 6)]
    assert callback.history[0].report.kept_ranks == report.total_ranks  # ξ = 0 in the dense stage
    assert callback.history[-1].threshold == pytest.approx(0.2)
    A, _ = model.bert.encoder.layer[0].attention.self.query.adapters["default"].as_lora()
    assert A.shape[0] == report.modules["bert.encoder.layer.0.attention.self.query"][0]
