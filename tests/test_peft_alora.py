"""ALoRA: binary rank gates (all on == LoRA), AB-LoRA importance from batched ablations (== one by
one), allocation rounds (budget, rank_pattern, continuity, optimizer state), save/load, export,
and a `Trainer` run with the callback."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

from nagner.peft import (
    LoraConfig,
    adapted_layers,
    adapter_config,
    attach,
    export_peft_lora,
    load_adapter,
    merge,
    parameter_counts,
    save_adapter,
    unmerge,
)
from nagner.peft.methods.alora import AloraAdapter, AloraConfig, alora_adapters
from nagner.peft.methods.alora.allocation import AloraCallback, alora_allocation_round, rank_importance
from nagner.peft.procedures import per_example_loss
from nagner.peft.trainer import AdapterTrainer

TARGETS = ["query", "value"]


def tiny_regressor(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=100,
        num_labels=1,
    )
    return BertForSequenceClassification(config).eval()


def batch(n: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    mask = torch.ones(n, 7, dtype=torch.long)
    mask[-1, 5:] = 0
    return {
        "input_ids": torch.randint(0, 100, (n, 7), generator=generator),
        "attention_mask": mask,
        "labels": torch.randn(n, generator=generator),
    }


def run(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        inputs = {k: v for k, v in batch().items() if k != "labels"}
        return model(**inputs).logits


@torch.no_grad()
def randomise(model: nn.Module, seed: int = 3) -> None:
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        if ".adapters." in name:
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


def alora_model(r: int = 4) -> BertForSequenceClassification:
    model = tiny_regressor()
    attach(model, AloraConfig(r=r, lora_alpha=8, target_modules=TARGETS))
    randomise(model)
    return model


# ------------------------------------------------------------------------------------ the module
def test_attach_is_a_no_op_and_all_gates_on_equals_lora() -> None:
    base = tiny_regressor()
    lora, alora = copy.deepcopy(base), copy.deepcopy(base)
    attach(alora, AloraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    assert torch.equal(run(alora), run(base))
    attach(lora, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    randomise(lora)
    randomise(alora)
    assert all(bool(a.rank_mask.all()) for a in alora_adapters(alora).values())
    assert torch.equal(run(alora), run(lora))


def test_parameter_count_is_plain_lora_and_the_mask_is_a_saved_buffer() -> None:
    model = tiny_regressor()
    attach(model, AloraConfig(r=4, target_modules=["query", "intermediate.dense"]))
    assert parameter_counts(model)["adapter"] == 2 * 4 * (32 + 32) + 2 * 4 * (32 + 64)
    keys = [k for k in model.state_dict() if "rank_mask" in k]
    assert len(keys) == 4


def test_off_ranks_are_dropped_by_as_lora_merge_and_export(tmp_path) -> None:
    peft = pytest.importorskip("peft")
    model = alora_model()
    adapter: AloraAdapter = model.bert.encoder.layer[0].attention.self.query.adapters["default"]
    adapter.rank_mask[[0, 2]] = 0
    A, B = adapter.as_lora()
    assert A.shape == (2, 32) and B.shape == (32, 2)
    torch.testing.assert_close(
        B @ A, adapter.scaling * adapter.lora_B.weight[:, [1, 3]] @ adapter.lora_A.weight[[1, 3]]
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    unmerged = run(model)
    merge(model)
    torch.testing.assert_close(run(model), unmerged, atol=1e-5, rtol=1e-5)
    unmerge(model)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=1e-6, msg=key)
    export_peft_lora(model, tmp_path / "lora")
    theirs = peft.PeftModel.from_pretrained(tiny_regressor(), str(tmp_path / "lora")).eval()
    torch.testing.assert_close(run(theirs), unmerged, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------ importance
def brute_force_importance(model: nn.Module, loss_fn, data: dict) -> dict[str, torch.Tensor]:
    """loss(M∖r) − loss(M_r), one forward pass per setting, by editing the gates."""
    adapters = alora_adapters(model)
    masks = {m: a.rank_mask.clone() for m, a in adapters.items()}
    scores = {m: torch.full((a.r,), float("nan")) for m, a in adapters.items()}
    model.eval()
    with torch.no_grad():
        for m, adapter in adapters.items():
            for i in range(adapter.r):
                if not masks[m][i]:
                    continue
                adapter.rank_mask.copy_(masks[m])
                adapter.rank_mask[i] = 0
                without = loss_fn(model, data).mean()
                for other in adapters.values():
                    other.rank_mask.zero_()
                adapter.rank_mask[i] = 1
                alone = loss_fn(model, data).mean()
                for name, other in adapters.items():
                    other.rank_mask.copy_(masks[name])
                scores[m][i] = without - alone
    return scores


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner, self.outer = nn.Linear(3, 5), nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(torch.tanh(self.inner(x)))


def test_importance_of_a_hand_built_mlp_equals_one_by_one_ablation() -> None:
    torch.manual_seed(0)
    model = Mlp()
    attach(model, AloraConfig(r=3, lora_alpha=3, target_modules=["inner", "outer"]))
    randomise(model)
    model.inner.adapters["default"].rank_mask[1] = 0  # an off rank is not scored
    data = {"x": torch.randn(4, 3), "y": torch.randn(4, 2)}

    def loss_fn(m: nn.Module, b: dict) -> torch.Tensor:
        return (m(b["x"]) - b["y"]).pow(2).mean(-1)  # (n,)

    batched = rank_importance(model, "default", loss_fn, data, masks_per_forward=4)
    expected = brute_force_importance(model, loss_fn, data)
    assert torch.isnan(batched["inner"][1])
    for m in expected:
        torch.testing.assert_close(batched[m], expected[m], atol=1e-6, rtol=1e-6, equal_nan=True)
    assert all(
        bool(a.rank_mask.sum() == (2 if m == "inner" else 3)) for m, a in alora_adapters(model).items()
    )


def test_importance_on_bert_equals_one_by_one_ablation() -> None:
    model = alora_model(r=2)
    batched = rank_importance(model, "default", per_example_loss, batch(), masks_per_forward=5)
    expected = brute_force_importance(model, per_example_loss, batch())
    for m in expected:
        torch.testing.assert_close(batched[m], expected[m], atol=1e-5, rtol=1e-5)


def test_scoring_needs_per_example_losses() -> None:
    model = alora_model(r=2)
    with pytest.raises(ValueError, match="per-example"):
        rank_importance(model, "default", lambda m, b: per_example_loss(m, b).mean(), batch())


# ------------------------------------------------------------------------------------- a round
def test_round_keeps_the_budget_moves_ranks_and_keeps_outputs() -> None:
    model = alora_model(r=4)
    reference = copy.deepcopy(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    per_example_loss(model, batch()).mean().backward()
    optimizer.step()
    reference.load_state_dict(model.state_dict())
    result = alora_allocation_round(
        model, "default", per_example_loss, batch(), n_prune=3, optimizer=optimizer
    )

    adapters = alora_adapters(model)
    assert sum(a.r for a in adapters.values()) == 16 == sum(result.ranks.values())
    assert sum(result.pruned.values()) == 3 == sum(result.added.values())
    # The pruned ranks are the 3 lowest scores; only modules that lost none receive.
    scores = torch.cat([result.importance[m] for m in adapters])
    lowest = set(scores.argsort()[:3].tolist())
    flat = [(m, i) for m in adapters for i in range(4)]
    assert {m for k, (m, _) in enumerate(flat) if k in lowest} == {m for m, n in result.pruned.items() if n}
    assert all(result.added[m] == 0 for m, n in result.pruned.items() if n)
    receivers = sorted(
        (m for m, n in result.pruned.items() if n == 0), key=lambda m: -result.importance[m].mean()
    )
    each, extra = divmod(3, len(receivers))
    assert [result.added[m] for m in receivers] == [each + (k < extra) for k in range(len(receivers))]
    # rank_pattern holds the new per-module ranks; the scaling stays α / r₀.
    config = adapter_config(model)
    for m, adapter in adapters.items():
        assert (
            config.rank_and_alpha(m)[0]
            == adapter.r
            == adapter.lora_A.weight.shape[0]
            == adapter.rank_mask.numel()
        )
        assert adapter.lora_B.weight.shape[1] == adapter.r and adapter.scaling == 2.0
    # Outputs == the old adapter with the pruned ranks off (new ranks start with zero B columns).
    for m, adapter in alora_adapters(reference).items():
        for k in lowest:
            if flat[k][0] == m:
                adapter.rank_mask[flat[k][1]] = 0
    torch.testing.assert_close(run(model), run(reference), atol=1e-6, rtol=1e-6)
    # The optimizer state was cut and padded like the tensors; training goes on.
    for parameter in optimizer.param_groups[0]["params"]:
        for value in optimizer.state[parameter].values():
            if value.dim():
                assert value.shape == parameter.shape
    per_example_loss(model, batch()).mean().backward()
    optimizer.step()


def test_round_arguments_are_checked() -> None:
    model = alora_model(r=2)
    with pytest.raises(ValueError, match="n_prune"):
        alora_allocation_round(model, "default", per_example_loss, batch(), n_prune=8)
    merge(model)
    with pytest.raises(RuntimeError, match="unmerge"):
        alora_allocation_round(model, "default", per_example_loss, batch(), n_prune=1)


def test_save_load_round_trip_with_per_module_ranks(tmp_path) -> None:
    model = alora_model(r=4)
    alora_allocation_round(model, "default", per_example_loss, batch(), n_prune=3)
    model.bert.encoder.layer[1].attention.self.value.adapters["default"].rank_mask[0] = 0
    ranks = {m: a.r for m, a in alora_adapters(model).items()}
    assert len(set(ranks.values())) > 1
    save_adapter(model, tmp_path / "alora")
    fresh = tiny_regressor()
    load_adapter(fresh, tmp_path / "alora")
    assert {m: a.r for m, a in alora_adapters(fresh).items()} == ranks
    assert fresh.bert.encoder.layer[1].attention.self.value.adapters["default"].rank_mask[0] == 0
    assert torch.equal(run(fresh), run(model))


def test_trainer_with_the_callback_reallocates_and_keeps_training(tmp_path) -> None:
    model = tiny_regressor()
    model.train()
    attach(model, AloraConfig(r=4, target_modules=TARGETS))
    generator = torch.Generator().manual_seed(2)
    data = [
        {
            "input_ids": torch.randint(0, 100, (6,), generator=generator),
            "labels": torch.randn((), generator=generator),
        }
        for _ in range(16)
    ]
    callback = AloraCallback(batch(), at_steps=[2, 4])
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
    trainer = AdapterTrainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    trainer.train()
    assert len(callback.history) == 2
    assert all(sum(r.pruned.values()) == 4 for r in callback.history)  # n_prune = number of modules
    adapters = alora_adapters(model)
    assert sum(a.r for a in adapters.values()) == 16
    assert any(a.r != 4 for a in adapters.values())
    config = adapter_config(model)
    assert len(config.rank_pattern) == 4
    assert all(config.rank_and_alpha(m)[0] == a.r for m, a in adapters.items())
    for name, parameter in model.named_parameters():
        if ".adapters." in name:
            assert parameter.grad is None or parameter.grad.shape == parameter.shape
            for value in trainer.optimizer.state[parameter].values():
                if torch.is_tensor(value) and value.dim():
                    assert value.shape == parameter.shape, name
    assert len(adapted_layers(model)) == 4
