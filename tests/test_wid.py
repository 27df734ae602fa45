"""WID (`nagner.compression.wid`): identity compactors change nothing, the mask schedule by hand,
per-head and whole-head cuts, the squeeze, and the defining property: the converted dense student
computes exactly what the compacted teacher computes with its masks applied (≤ 1e-5), and loads
with ``AutoModel.from_pretrained``."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel

from nagner.compression.wid import (
    WidConfig,
    attach_compactors,
    convert_to_student,
    masked_counts,
    squeeze_gradients,
    update_masks,
)
from nagner.testing import build_tiny_encoder

IDS = torch.randint(5, 60, (3, 9), generator=torch.Generator().manual_seed(0))
MASK = torch.ones_like(IDS)
MASK[2, 6:] = 0


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("wid") / "encoder")  # 32 hidden, 2 heads of 16, FFN 64


def teacher(encoder_dir):
    return AutoModel.from_pretrained(str(encoder_dir)).eval()


def run(model):
    with torch.no_grad():
        out = model(input_ids=IDS, attention_mask=MASK)
    return out.last_hidden_state, out.pooler_output


def test_identity_compactors_change_no_output(encoder_dir):
    model = teacher(encoder_dir)
    before = run(model)
    plan = attach_compactors(model, WidConfig(target_hidden=16, target_intermediate=32))
    after = run(model)
    torch.testing.assert_close(after[0], before[0], rtol=0, atol=1e-6)
    assert len(plan.linears) == 2 * 6 + 1  # q, k, v, attention output, FFN in, FFN out per layer; pooler


def test_the_schedule_by_hand(encoder_dir):
    plan = attach_compactors(teacher(encoder_dir), WidConfig(target_hidden=16, target_intermediate=32, w_step=10, increments=4))
    # hidden / attention: 32 → 16 = 8 dimensions cut in each of the 2 heads, a quarter per 10 steps
    expected = {0: 0, 9: 0, 10: 4, 25: 8, 30: 12, 40: 16, 1000: 16}
    for step, count in expected.items():
        counts = masked_counts(plan, step)
        assert counts["hidden"] == counts["attention.1"] == count
        assert counts["ffn.0"] == 32 * min(step // 10, 4) // 4  # FFN 64 → 32


def test_masks_grow_by_norm_and_stay(encoder_dir):
    plan = attach_compactors(teacher(encoder_dir), WidConfig(target_hidden=16, target_intermediate=32, w_step=10, increments=4))
    ranker = plan.rankers["ffn.0"].row
    with torch.no_grad():
        ranker.mul_(torch.linspace(2.0, 1.0, 64)[:, None])  # row norms fall with the index
    assert update_masks(plan, 10)
    keep = plan.masks.keep("ffn.0")
    assert keep[:56].all() and not keep[56:].any()  # the 8 smallest-norm dimensions
    with torch.no_grad():
        ranker[60:].mul_(100.0)  # a masked row growing back does not unmask it
    update_masks(plan, 20)
    assert not plan.masks.keep("ffn.0")[56:].any() and int((~plan.masks.keep("ffn.0")).sum()) == 16
    hidden = plan.masks.keep("hidden").view(2, 16)
    assert (hidden.sum(-1) == torch.tensor([12, 12])).all()  # "dim": the same cut in every head


def test_the_head_strategy_drops_whole_heads(encoder_dir):
    plan = attach_compactors(teacher(encoder_dir), WidConfig(target_hidden=16, target_intermediate=32, strategy="head", w_step=10, increments=1))
    with torch.no_grad():
        plan.rankers["attention.0"].row[16:].mul_(0.1)  # head 1 has the smaller norms
    update_masks(plan, 10)
    assert plan.masks.keep("attention.0").view(2, 16).all(-1).tolist() == [True, False]
    with pytest.raises(ValueError, match="multiple of the head size"):
        attach_compactors(teacher(encoder_dir), WidConfig(target_hidden=20, target_intermediate=32, strategy="head"))


def test_the_squeeze_on_gradients_and_adams_first_moment(encoder_dir):
    plan = attach_compactors(teacher(encoder_dir), WidConfig(target_hidden=16, target_intermediate=32, w_step=1, increments=1, l2_lambda=20.0))
    linear = plan.linears["encoder.layer.0.output.dense"]  # rows: ffn.0, columns: hidden
    optimizer = torch.optim.Adam(plan.compactor_parameters(), lr=1e-3)
    for weight in plan.compactor_parameters():
        weight.grad = torch.full_like(weight, 0.5)
    squeeze_gradients(plan, optimizer)  # before any mask: grad += w
    torch.testing.assert_close(linear.row.grad, 0.5 + linear.row.detach())
    optimizer.step()
    update_masks(plan, 1)
    for weight in plan.compactor_parameters():
        weight.grad = torch.full_like(weight, 0.5)
    moment = optimizer.state[linear.row]["exp_avg"].clone()
    squeeze_gradients(plan, optimizer)
    masked_rows = ~plan.masks.keep("ffn.0")
    w = linear.row.detach()
    torch.testing.assert_close(linear.row.grad[masked_rows], w[masked_rows])  # min(λ, 1)·w
    torch.testing.assert_close(linear.row.grad[~masked_rows], torch.full_like(w[~masked_rows], 0.5))
    expected = moment[masked_rows] * 0.9 + 0.1 * 19.0 * w[masked_rows]  # (λ − 1)·w into the moment
    torch.testing.assert_close(optimizer.state[linear.row]["exp_avg"][masked_rows], expected)


@pytest.mark.parametrize("strategy", ["dim", "head"])
def test_the_student_computes_what_the_compacted_teacher_computes(encoder_dir, tmp_path, strategy):
    model = teacher(encoder_dir)
    plan = attach_compactors(model, WidConfig(target_hidden=16, target_intermediate=32, strategy=strategy, w_step=1, increments=1))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # compactors away from the identity, as after training
        for weight in plan.compactor_parameters():
            weight.add_(torch.randn(weight.shape, generator=generator) * 0.05)
    update_masks(plan, 1)
    plan.masks.hard = True
    hidden_states, pooled = run(model)
    student = convert_to_student(model, plan)
    config = student.config
    assert (config.hidden_size, config.intermediate_size) == (16, 32)
    assert config.num_attention_heads == (2 if strategy == "dim" else 1)
    keep = plan.masks.keep("hidden")
    assert hidden_states[..., ~keep].abs().max() == 0  # the masked stream is exactly zero
    ours = run(student)
    torch.testing.assert_close(ours[0], hidden_states[..., keep], rtol=0, atol=1e-5)
    torch.testing.assert_close(ours[1], pooled[..., keep], rtol=0, atol=1e-5)
    student.save_pretrained(tmp_path / "student")  # a plain BERT: no code of ours to load it
    loaded = AutoModel.from_pretrained(str(tmp_path / "student")).eval()
    torch.testing.assert_close(run(loaded)[0], ours[0], rtol=0, atol=0)
    dense = sum(p.numel() for p in teacher(encoder_dir).parameters())
    assert sum(p.numel() for p in loaded.parameters()) < 0.6 * dense


def test_a_trainer_run_grows_the_masks_on_schedule_and_squeezes_the_masked_rows(encoder_dir, tmp_path):
    from transformers import BertConfig, BertForMaskedLM, Trainer, TrainingArguments

    from nagner.compression.wid import WidCallback, squeezed_fraction, wid_param_groups

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = BertForMaskedLM(config)
    plan = attach_compactors(model.bert, WidConfig(target_hidden=16, target_intermediate=32, w_step=4, increments=2))
    generator = torch.Generator().manual_seed(2)
    data = [{"input_ids": (ids := torch.randint(5, 64, (8,), generator=generator)), "labels": ids} for _ in range(32)]
    callback = WidCallback(plan)
    optimizer = torch.optim.AdamW(wid_param_groups(model, plan, compactor_lr=1e-2, base_lr=1e-6))
    args = TrainingArguments(
        output_dir=str(tmp_path / "wid"), per_device_train_batch_size=4, max_steps=40, report_to=[],
        save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True, lr_scheduler_type="constant",
    )
    Trainer(model=model, args=args, train_dataset=data, callbacks=[callback], optimizers=(optimizer, None)).train()
    assert callback.history == [(4, 24), (8, 16)]  # half the cut after one w_step, all of it after two
    assert squeezed_fraction(plan) < 0.05  # masked rows driven to (nearly) zero (about 0.02; without the squeeze about 1)


def test_nagner_compress_end_to_end_and_bad_input(encoder_dir, tmp_path, capsys):
    from nagner.cli import main

    text = tmp_path / "text.txt"
    text.write_text("\n".join(f"the university of paris {i} and berlin in london" for i in range(12)) + "\n\n")
    out = tmp_path / "student"
    argv = ["compress", "--encoder", str(encoder_dir), "--text", str(text), "--output", str(out), "--target-hidden", "16",
            "--target-intermediate", "32", "--steps", "18", "--w-step", "1", "--head-steps", "2", "--batch-size", "4"]
    assert main(argv) == 0
    student = AutoModel.from_pretrained(str(out))
    assert (student.config.hidden_size, student.config.intermediate_size) == (16, 32)
    report = json.loads((out / "wid.json").read_text())
    assert report["texts"] == 12 and report["student"]["hidden_size"] == 16
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "wid.json"} <= names
    assert not any((out / scratch).exists() for scratch in ("head", "wid"))  # no Trainer scratch left
    capsys.readouterr()
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert main([*argv[:3], "--text", str(empty), *argv[5:]]) == 2
    assert "no text lines" in capsys.readouterr().err
    assert main([*argv[:7], "--target-hidden", "15", *argv[9:]]) == 2  # not a multiple of the 2 heads
    err = capsys.readouterr().err
    assert "multiple of the 2 heads" in err and "Traceback" not in err
    assert main([*argv[:11], "--steps", "10", *argv[13:]]) == 2
    assert "16 steps" in capsys.readouterr().err


def test_the_masked_positions_loss_is_bert_for_masked_lms_loss(encoder_dir):
    from nagner.compression.wid.recipe import MaskedPositionsLoss, mlm_model

    torch.manual_seed(0)
    model = mlm_model(str(encoder_dir)).eval()
    labels = torch.full_like(IDS, -100)
    labels[0, 2], labels[1, 5], labels[2, 1] = 7, 11, 13
    with torch.no_grad():
        expected = model(input_ids=IDS, attention_mask=MASK, labels=labels).loss
        ours = MaskedPositionsLoss(model)(input_ids=IDS, attention_mask=MASK, labels=labels)["loss"]
    assert torch.allclose(ours, expected, atol=1e-6)
