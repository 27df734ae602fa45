"""A yes/no answerer that classifies instead of generating: a BERT-style encoder with a two-class
head over the FinalAnswer prompt (question and facts), e.g. all-MiniLM-L6-v2 fine-tuned by
`knowledge_qa.training.answer_classifier`.

It is an option beside the paper's path (the core model scores "yes" / "no" as continuations). A
small encoder learns a yes/no decision from a few thousand examples, where a freshly warm-started
decoder first has to learn to write the two words. It only scores: ``score`` gives the log-softmax
of the class logits for the options that are class names, ``generate`` refuses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from knowledge_qa.errors import QAInputError
from knowledge_qa.models.base import TextModel


def is_classifier_folder(path: str | Path) -> bool:
    """True when ``path`` is a local folder holding a sequence-classification model."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    architectures = AutoConfig.from_pretrained(str(path)).architectures or []
    return any(name.endswith("ForSequenceClassification") for name in architectures)


class ClassifierAnswerer(TextModel):
    """`TextModel` over a sequence classifier whose labels (``config.id2label``) name the options."""

    def __init__(self, model, tokenizer, *, batch_size: int = 32, max_input_tokens: int = 256, name: str = ""):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        # never more than the model's positions (a longer prompt is cut at the end: the facts' tail)
        self.max_input_tokens = min(max_input_tokens, getattr(model.config, "max_position_embeddings", max_input_tokens))
        self.name = name or getattr(model.config, "_name_or_path", type(model).__name__)
        self.labels = {str(label): int(index) for index, label in model.config.id2label.items()}

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | None = None, **options) -> ClassifierAnswerer:
        model = AutoModelForSequenceClassification.from_pretrained(str(path))
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device), tokenizer, name=str(path), **options)

    def describe(self) -> str:
        return f"classifier answerer {self.name} (labels {', '.join(self.labels)})"

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int = 64, num_candidates: int = 1, stop: Sequence[str] = ()
    ) -> list[list[str]]:
        raise QAInputError(f"{self.name} is a classifier: it can only be the answerer (--answerer), not write text")

    @torch.no_grad()
    def score(self, prompts: Sequence[str], options: Sequence[str]) -> list[list[float]]:
        """log p(class = option | prompt); an option that is no class scores -inf."""
        columns = [self.labels.get(option.strip().lower()) for option in options]
        device = next(self.model.parameters()).device
        rows: list[list[float]] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = self.tokenizer(
                list(prompts[start : start + self.batch_size]), padding=True, truncation=True,
                max_length=self.max_input_tokens, return_tensors="pt",
            ).to(device)
            log_probs = torch.log_softmax(self.model(**batch).logits.float(), dim=-1)  # (B, classes)
            for row in log_probs.tolist():
                rows.append([row[c] if c is not None else -math.inf for c in columns])
        return rows
