"""`AdapterTrainer` adds the adapters' auxiliary loss once per optimizer step, whatever the gradient
accumulation: at one effective batch, accumulation 1, 2 and 4 give the same gradient on SoRA's gates
(review B1: it grew 0.25 / 0.5 / 1.0 when transformers treats the loss as already scaled)."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, TrainerCallback, TrainingArguments

from nagner.peft import adapted_layers, attach
from nagner.peft.methods.sora import SoraConfig
from nagner.peft.trainer import AdapterTrainer


class GateGradient(TrainerCallback):
    """Records the summed |gradient| on every SoRA gate just before the first optimizer step."""

    def __init__(self):
        self.value = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.value is None:
            gates = [layer.adapters["default"].lora_gate for layer in adapted_layers(model).values()]
            self.value = sum(float(g.grad.abs().sum()) for g in gates)


def gate_gradient(tmp_path, batch: int, accumulation: int) -> float:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=16)
    model = GPT2LMHeadModel(config)  # its forward takes loss kwargs: transformers then skips the GA division
    attach(model, SoraConfig(r=4, target_modules=["c_attn"], l1_weight=1.0))  # B = 0: only the L1 term moves gates
    generator = torch.Generator().manual_seed(1)
    data = [{"input_ids": (ids := torch.randint(0, 50, (8,), generator=generator)), "labels": ids} for _ in range(4)]
    recorder = GateGradient()
    args = TrainingArguments(
        output_dir=str(tmp_path / f"b{batch}-ga{accumulation}"), per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation, max_steps=1, max_grad_norm=0.0, learning_rate=1e-3,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True,
    )
    AdapterTrainer(model=model, args=args, train_dataset=data, callbacks=[recorder]).train()
    return recorder.value


def test_auxiliary_loss_does_not_grow_with_gradient_accumulation(tmp_path):
    single, two, four = (gate_gradient(tmp_path, 4 // k, k) for k in (1, 2, 4))
    assert single > 0
    assert two == pytest.approx(single, rel=1e-5) and four == pytest.approx(single, rel=1e-5)
