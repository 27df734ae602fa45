"""Task-agnostic WID from a pretrained encoder and plain text: fit an MLM head on the frozen
teacher (all-MiniLM-L6-v2 ships none), run WID with the MLM loss, and save the dense student.

    compress_with_wid("sentence-transformers/all-MiniLM-L6-v2", texts, WidConfig(192, 768),
                      WidTraining(steps=2000), "students/minilm-192")

The MLM head is BERT's (dense → GELU → LayerNorm → decoder tied to the word embeddings, plus a
bias); fitting it first trains its transform and bias for ``head_steps`` on the same text with the
encoder frozen, so that WID starts from a teacher whose MLM loss means something. The text is the
user's (a file of one passage a line); say in results which text was used.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from nagner.common.atomic import atomic_folder
from nagner.common.encoders import resolve_encoder
from nagner.compression.wid.config import WidConfig
from nagner.compression.wid.convert import convert_to_student
from nagner.compression.wid.plan import attach_compactors
from nagner.compression.wid.training import WidCallback, squeezed_fraction, wid_param_groups

REPORT_FILE = "wid.json"


@dataclass
class WidTraining:
    """How long and how WID trains (the official learning rates; batch and steps for a CPU)."""

    steps: int = 2000
    batch_size: int = 32
    max_length: int = 128
    compactor_lr: float = 5e-5
    base_lr: float = 1e-6
    mlm_probability: float = 0.15
    head_steps: int = 200
    head_lr: float = 1e-3
    seed: int = 0


def mlm_model(encoder: str) -> BertForMaskedLM:
    """A BERT MLM model whose encoder (and pooler) are ``encoder``'s pretrained weights; the MLM
    head is new."""
    path = resolve_encoder(encoder)
    config = BertConfig.from_pretrained(path)
    model = BertForMaskedLM(config)
    loaded = type(model.bert).from_pretrained(path)
    model.bert.load_state_dict(loaded.state_dict(), strict=False)
    model.bert.pooler = loaded.pooler  # not used by the MLM loss; carried so the student has the teacher's
    model.tie_weights()
    return model


class MaskedPositionsLoss(nn.Module):
    """``model``'s MLM loss with the vocabulary projection run only at the masked positions (the
    same mean cross entropy as `BertForMaskedLM`'s; ~15 % of the tokens, so the 30k-way output
    layer, the largest cost of a small encoder's MLM step, shrinks about 7×)."""

    def __init__(self, model: BertForMaskedLM):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, **_: Any) -> dict[str, torch.Tensor]:
        hidden = self.model.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]  # (B, T, d)
        chosen = labels != -100  # (B, T)
        logits = self.model.cls(hidden[chosen])  # (M, V)
        return {"loss": F.cross_entropy(logits, labels[chosen]) if chosen.any() else hidden.sum() * 0.0}


def _features(texts: Sequence[str], tokenizer: Any, max_length: int) -> list[dict[str, list[int]]]:
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, return_special_tokens_mask=True)
    return [{k: encoded[k][i] for k in encoded} for i in range(len(texts))]


def _train(model, data, collator, steps, batch_size, optimizer, output: Path, seed: int, callbacks=()) -> float:
    args = TrainingArguments(
        output_dir=str(output), per_device_train_batch_size=batch_size, max_steps=steps, seed=seed,
        lr_scheduler_type="constant", report_to=[], save_strategy="no", logging_strategy="no",
        use_cpu=not torch.cuda.is_available(), disable_tqdm=True, remove_unused_columns=False,
    )
    trainer = Trainer(
        model=MaskedPositionsLoss(model), args=args, train_dataset=data, data_collator=collator, optimizers=(optimizer, None),
        callbacks=list(callbacks),
    )
    return float(trainer.train().training_loss)


def fit_mlm_head(
    encoder: str, texts: Sequence[str], training: WidTraining, scratch_dir: str | Path
) -> tuple[BertForMaskedLM, float]:
    """``encoder`` with a new MLM head fitted on ``texts`` for ``training.head_steps`` with the
    encoder frozen (the decoder stays tied to the word embeddings), and the fit's mean loss;
    everything is trainable again on return. ``scratch_dir``: the Trainer's output folder (nothing
    is saved in it)."""
    torch.manual_seed(training.seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(encoder))
    model = mlm_model(encoder)
    data = _features(texts, tokenizer, training.max_length)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=training.mlm_probability)
    head = [p for n, p in model.named_parameters() if n.startswith("cls.") and "decoder.weight" not in n]
    model.bert.requires_grad_(False)
    loss = _train(
        model, data, collator, training.head_steps, training.batch_size,
        torch.optim.AdamW(head, lr=training.head_lr), Path(scratch_dir), training.seed,
    )
    model.requires_grad_(True)
    return model, loss


def compress_with_wid(
    encoder: str,
    texts: Sequence[str],
    config: WidConfig,
    training: WidTraining,
    output_dir: str | Path,
    teacher: BertForMaskedLM | None = None,
) -> dict[str, Any]:
    """Fit the MLM head (unless ``teacher``, an encoder with a fitted MLM head from
    `fit_mlm_head`, is given; it is compacted in place), run WID, write the student (and the
    teacher's tokenizer) to ``output_dir`` atomically with a ``wid.json`` report; returns the report."""
    if not texts:
        raise ValueError("no text to train on")
    if training.steps < config.w_step * config.increments:
        raise ValueError(
            f"the masks reach their targets after w_step × increments = {config.w_step * config.increments} steps; "
            f"{training.steps} steps would stop short"
        )
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(encoder))
    data = _features(texts, tokenizer, training.max_length)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=training.mlm_probability)
    with atomic_folder(output_dir) as folder:
        if teacher is None:
            model, head_loss = fit_mlm_head(encoder, texts, training, folder / "head")
        else:
            model, head_loss = teacher, None  # fitted by the caller
        torch.manual_seed(training.seed)
        plan = attach_compactors(model.bert, config)
        callback = WidCallback(plan)
        optimizer = torch.optim.AdamW(wid_param_groups(model, plan, training.compactor_lr, training.base_lr))
        wid_loss = _train(model, data, collator, training.steps, training.batch_size, optimizer, folder / "wid", training.seed, [callback])
        plan.masks.hard = True
        student = convert_to_student(model.bert, plan)
        for scratch in ("head", "wid"):  # the Trainers' output folders (nothing saved in them)
            shutil.rmtree(folder / scratch, ignore_errors=True)
        student.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        report = {
            "teacher": encoder,
            "wid": asdict(config),
            "training": asdict(training),
            "texts": len(texts),
            "mlm_loss_head_fit": head_loss,
            "mlm_loss_wid": wid_loss,
            "mask_history": callback.history,
            "squeezed_fraction": squeezed_fraction(plan),
            "student": {"hidden_size": student.config.hidden_size, "heads": student.config.num_attention_heads,
                        "intermediate_size": student.config.intermediate_size,
                        "parameters": sum(p.numel() for p in student.parameters())},
        }
        (folder / REPORT_FILE).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report
