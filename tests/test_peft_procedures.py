"""Each adapter method declares its own training procedures (`nagner.peft.training_callbacks`), and
no code outside `nagner.peft` names a method or an adapter parameter (docs/style.md)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_bert

from nagner.peft import (
    AloraConfig,
    LoraConfig,
    MiLoraConfig,
    MosLoraConfig,
    SoraConfig,
    TrainingContext,
    attach,
    base_parameter_name,
    base_state_dict,
    is_adapter_parameter,
    training_callbacks,
)
from nagner.peft.methods.alora.allocation import AloraCallback
from nagner.peft.methods.sora.schedule import SoraCallback
from nagner.peft.procedures import per_example_loss

ROOT = Path(__file__).resolve().parent.parent
BATCH = {"input_ids": torch.tensor([[5, 6, 7, 8]]), "labels": torch.tensor([0])}


def callbacks_for(config, **context):
    model = tiny_bert()
    attach(model, config)
    return training_callbacks(model, TrainingContext(**{"steps_per_epoch": 8, "total_steps": 40, **context}))


def test_sora_declares_its_proximal_step():
    (callback,) = callbacks_for(SoraConfig(r=4, target_modules=["query"]))
    assert isinstance(callback, SoraCallback) and callback.name == "default"


def test_alora_declares_allocation_rounds_at_the_paper_steps_on_the_validation_batch():
    losses = []

    def loss_fn(module, batch):
        losses.append(batch)
        return torch.zeros(1)

    (callback,) = callbacks_for(
        AloraConfig(r=4, target_modules=["query"]), validation_batch=BATCH, loss_fn=loss_fn, max_batch_copies=3
    )
    assert isinstance(callback, AloraCallback)
    assert callback.at_steps == {8, 10, 12, 14, 16, 18, 20, 22}  # after one epoch, then every quarter, 8 rounds
    assert callback.batch is BATCH and callback.loss_fn is loss_fn and callback.masks_per_forward == 3
    (default,) = callbacks_for(AloraConfig(r=4, target_modules=["query"]), validation_batch=BATCH)
    assert default.loss_fn is per_example_loss


@pytest.mark.parametrize(
    ("context", "reason"),
    [
        ({"total_steps": 8, "validation_batch": BATCH}, "training is too short"),
        ({}, "no validation batch"),
    ],
)
def test_alora_without_a_possible_round_warns_and_declares_nothing(context, reason, caplog):
    with caplog.at_level(logging.WARNING):
        assert callbacks_for(AloraConfig(r=4, target_modules=["query"]), **context) == []
    assert reason in caplog.text and "stays plain LoRA" in caplog.text


@pytest.mark.parametrize("config", [LoraConfig(r=4, target_modules=["query"]), MosLoraConfig(r=4, target_modules=["query"])])
def test_methods_without_a_procedure_declare_none(config):
    assert callbacks_for(config) == []


def test_the_adapted_module_is_looked_up_when_it_is_not_the_trainers_model():
    class TaskModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = tiny_bert()

    task = TaskModel()
    attach(task.encoder, SoraConfig(r=4, target_modules=["query"]))
    (callback,) = training_callbacks(task, TrainingContext(8, 40, adapted_module=task.encoder))
    assert callback.adapted_module is task.encoder


def test_base_state_dict_is_the_state_before_attaching():
    model = tiny_bert()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    attach(model, MiLoraConfig(r=4))  # per-layer experts and model-level routers
    after = base_state_dict(model)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[key], before[key]) for key in before)
    adapter_keys = [key for key in model.state_dict() if is_adapter_parameter(key)]
    assert adapter_keys and any(".adapters." in key for key in adapter_keys)
    assert any(key.startswith("nagner_peft.") for key in adapter_keys)  # the routers
    assert base_parameter_name("encoder.layer.0.attention.self.query.base_layer.weight") == (
        "encoder.layer.0.attention.self.query.weight"
    )


# Method names as strings, adapter parameter names, peft internals: only nagner.peft may use them.
PEFT_INTERNALS = re.compile(
    r"""["'](sora|alora|milora|moslora|para|loretta_adp|loretta_rep)["']|\.adapters\.|base_layer|nagner_peft\.extras"""
    r"""|STATE_ATTR|nagner\.peft\.methods\.\w+\.(allocation|schedule|sparsity)"""
)


def test_no_code_outside_nagner_peft_names_a_method_or_an_adapter_parameter():
    offenders = []
    for folder in ("nagner", "knowledge_qa"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "peft" in path.relative_to(ROOT).parts:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if PEFT_INTERNALS.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


# ------------------------------------------------------------------------- MiLoRA's bi-level
def classifier_batch(rows: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(3, 60, (rows, 6), generator=generator),
        "labels": torch.randint(0, 2, (rows,), generator=generator),
    }


def tiny_classifier():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    return BertForSequenceClassification(config)


def test_milora_declares_bilevel_steps_that_train_theta_on_the_validation_batch_only(tmp_path):
    """Review B5: the paper trains the rational activations Θ on the dev split (lr 1e-6), the rest
    Ω on the train split; `bilevel_parameters` had no caller."""
    from transformers import TrainingArguments

    from nagner.peft import AdapterTrainer, bilevel_parameters
    from nagner.peft.bilevel import BilevelCallback

    def trained(learning_rate: float):
        model = tiny_classifier()
        attach(model, MiLoraConfig(r=4, top_k=2, bilevel_learning_rate=learning_rate))
        model.classifier.requires_grad_(True)
        omega, theta = bilevel_parameters(model, "default")
        start = [p.detach().clone() for p in (*omega, *theta)]
        context = TrainingContext(steps_per_epoch=4, total_steps=4, validation_batch=classifier_batch(4, seed=9))
        (callback,) = training_callbacks(model, context)
        assert isinstance(callback, BilevelCallback) and not any(p.requires_grad for p in theta)
        args = TrainingArguments(
            output_dir=str(tmp_path / str(learning_rate)), per_device_train_batch_size=4, max_steps=4,
            learning_rate=1e-2, report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
            disable_tqdm=True,
        )
        data = [{k: v[i] for k, v in classifier_batch(16, seed=1).items()} for i in range(16)]
        AdapterTrainer(model=model, args=args, train_dataset=data, callbacks=[callback]).train()
        moved = [not torch.equal(p, q) for p, q in zip((*omega, *theta), start, strict=True)]
        return moved[: len(omega)], moved[len(omega) :], callback

    omega_moved, theta_moved, callback = trained(0.0)
    assert any(omega_moved) and not any(theta_moved)  # the Trainer's optimizer never touched Θ
    assert len(callback.history) == 4  # one step on the validation batch per optimizer step
    omega_moved, theta_moved, _ = trained(1e-2)
    assert any(omega_moved) and all(theta_moved)


def test_milora_without_a_validation_batch_warns_and_declares_nothing(caplog):
    with caplog.at_level(logging.WARNING):
        assert callbacks_for(MiLoraConfig(r=4)) == []
    assert "rational activations train on the training data" in caplog.text
    assert callbacks_for(MiLoraConfig(r=4, activation="gelu"), validation_batch=BATCH) == []
