"""Fine-tune a BERT-style encoder into a yes/no answerer (`ClassifierAnswerer`) on FinalAnswer
examples, with the transformers `Trainer`.

    examples (final_answer prompt → "yes"/"no") ─tokenise─▶ AutoModelForSequenceClassification ─▶ folder

The folder (config with ``id2label = {0: "no", 1: "yes"}``, safetensors weights, tokenizer) loads with
`AutoModelForSequenceClassification.from_pretrained` and with `knowledge-qa --answerer FOLDER`. It is
written atomically, beside ``training_summary.json`` (examples, answers, epochs, seconds, losses).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    set_seed,
)

from knowledge_qa.errors import QAInputError
from knowledge_qa.prompts import YES_NO_OPTIONS
from knowledge_qa.training.examples import TextExample
from nagner.common.atomic import atomic_folder

LABELS = ("no", "yes")  # class index → option text


@dataclass
class ClassifierOptions:
    """Training settings (defaults: the CPU benchmark's answerer)."""

    epochs: float = 3.0
    learning_rate: float = 5e-5
    batch_size: int = 16
    max_tokens: int = 256
    warmup_ratio: float = 0.1
    seed: int = 0


class _Encoded(torch.utils.data.Dataset):
    def __init__(self, encodings: dict[str, list[list[int]]], labels: list[int]):
        self.encodings, self.labels = encodings, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, list[int] | int]:
        return {**{key: values[index] for key, values in self.encodings.items()}, "labels": self.labels[index]}


def train_answer_classifier(
    examples: Sequence[TextExample], encoder: str, output_dir: str | Path, options: ClassifierOptions | None = None
) -> Path:
    """Fine-tune ``encoder`` (a name or folder of a BERT-style model) on the "final_answer"
    ``examples`` and save the classifier in ``output_dir``; returns the folder."""
    options = options or ClassifierOptions()
    chosen = [e for e in examples if e.task == "final_answer"]
    unknown = sorted({e.target for e in chosen} - set(YES_NO_OPTIONS))
    if unknown:
        raise QAInputError(f"final-answer targets must be yes/no, found {unknown[:3]}")
    if not chosen:
        raise QAInputError("no final_answer examples to train the classifier on")
    set_seed(options.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(encoder))
    model = AutoModelForSequenceClassification.from_pretrained(
        encoder, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={label: i for i, label in enumerate(LABELS)}
    )
    max_tokens = min(options.max_tokens, getattr(model.config, "max_position_embeddings", options.max_tokens))
    encodings = tokenizer([e.source for e in chosen], truncation=True, max_length=max_tokens)
    labels = [LABELS.index(e.target) for e in chosen]
    output = Path(output_dir)
    began = time.perf_counter()
    with atomic_folder(output) as folder, tempfile.TemporaryDirectory() as scratch:
        arguments = TrainingArguments(
            output_dir=scratch, num_train_epochs=options.epochs, learning_rate=options.learning_rate,
            per_device_train_batch_size=options.batch_size, weight_decay=0.01,
            warmup_steps=options.warmup_ratio,  # a float below 1 is a fraction of all steps
            logging_steps=50, save_strategy="no", report_to=[], seed=options.seed, disable_tqdm=True,
            dataloader_pin_memory=False,
        )
        trainer = Trainer(model=model, args=arguments, train_dataset=_Encoded(dict(encodings), labels),
                          processing_class=tokenizer)
        result = trainer.train()
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        summary = {
            "encoder": str(encoder), "examples": len(chosen), "answers": dict(Counter(e.target for e in chosen)),
            **vars(options), "steps": result.global_step, "train_loss": result.training_loss,
            "losses": [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h],
            "seconds": round(time.perf_counter() - began, 1),
        }
        (folder / "training_summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return output
