"""The token-classification baseline that NAG-NER is compared against on flat data (`bench/`).

A standard, well-tuned recipe: any encoder with ``AutoModelForTokenClassification``'s linear head,
one IOB2 label per word on its first sub-token (``-100`` on the others), AdamW with linear warmup
and decay through the transformers ``Trainer``, and, when a dev set is given, the epoch with the
best dev entity F1 kept. Words beyond ``max_length`` sub-tokens are predicted O and counted, so a
benchmark can report how much truncation cost.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from nagner.common.modes import evaluating
from nagner.data.example import Entity, Sentence
from nagner.data.tags import spans_to_tags, tags_to_spans
from nagner.evaluation import evaluate_entities


@dataclass
class EncodedSentence:
    """Model inputs of one sentence and where its words are.

    ``first_subtokens[w]`` is the position of word ``w``'s first sub-token, or ``None`` when the
    word has none: it was truncated away, or the tokenizer produced nothing for it.
    """

    features: dict[str, list[int]]  # input_ids, attention_mask[, token_type_ids][, labels]
    first_subtokens: list[int | None]
    truncated_words: int
    untokenized_words: int


def iob2_tags(sentence: Sentence) -> list[str]:
    """IOB2 tags of a sentence with flat entities; ``ValueError`` for nested or discontinuous ones."""
    where = f" ({sentence.source}:{sentence.line})" if sentence.source else ""
    entities = set(sentence.entities)
    for entity in entities:
        if entity.is_discontinuous:
            raise ValueError(f"the token-classification baseline needs flat entities{where}: {entity}")
    spans = [(entity.type, entity.start, entity.indices[-1] + 1) for entity in entities]
    try:
        return spans_to_tags(spans, len(sentence.words))
    except ValueError as error:
        raise ValueError(f"the token-classification baseline needs flat entities{where}: {error}") from error


class TokenClassificationBaseline:
    """``AutoModelForTokenClassification`` on any encoder name or path, trained and used on words.

    Call :meth:`train` (which builds a fresh model with the label set of the training data),
    then :meth:`predict`. After each :meth:`predict`, ``truncated_words`` holds how many words
    lay beyond ``max_length`` sub-tokens and were predicted O.
    """

    def __init__(self, encoder: str | os.PathLike):
        self.encoder = str(encoder)
        self.tokenizer = AutoTokenizer.from_pretrained(self.encoder)
        if not self.tokenizer.is_fast:
            raise ValueError(f"{self.encoder}: the baseline needs a fast tokenizer (for word_ids)")
        self.tokenizer.padding_side = "right"  # predict() reads first sub-tokens at unpadded positions
        self.model: PreTrainedModel | None = None
        self.labels: list[str] = []
        self.max_length = 512
        self.truncated_words = 0
        self.untokenized_words = 0

    def encode(self, words: Sequence[str], tags: Sequence[str] | None = None) -> EncodedSentence:
        """Sub-token inputs of ``words`` cut to ``max_length``; with ``tags``, also their labels.

        A word's label sits on its first sub-token; every other position gets -100.
        """
        encoding = self.tokenizer(
            list(words), is_split_into_words=True, truncation=True, max_length=self.max_length
        )
        first_subtokens: list[int | None] = [None] * len(words)
        for position, word in enumerate(encoding.word_ids()):
            if word is not None and first_subtokens[word] is None:
                first_subtokens[word] = position
        features = {key: list(values) for key, values in encoding.items()}
        if tags is not None:
            label_ids = {label: i for i, label in enumerate(self.labels)}
            labels = [-100] * len(features["input_ids"])
            for word, position in enumerate(first_subtokens):
                if position is not None:
                    labels[position] = label_ids[tags[word]]
            features["labels"] = labels
        kept = [word for word, position in enumerate(first_subtokens) if position is not None]
        # words after the last kept one were cut off only if the sequence is full
        cut_from = kept[-1] + 1 if kept else 0
        truncated = len(words) - cut_from if len(features["input_ids"]) >= self.max_length else 0
        untokenized = len(words) - len(kept) - truncated
        return EncodedSentence(features, first_subtokens, truncated, untokenized)

    def train(
        self,
        train_sentences: Sequence[Sentence],
        dev_sentences: Sequence[Sentence] | None = None,
        epochs: int = 3,
        lr: float = 5e-5,
        batch_size: int = 16,
        max_length: int = 256,
        seed: int = 42,
        warmup_ratio: float = 0.1,
        weight_decay: float = 0.01,
    ) -> dict:
        """Fine-tune a fresh model on flat entities; keep the best dev epoch when a dev set is given.

        Returns ``{"train_loss", "dev_f1" (per epoch, may be empty), "best_epoch"}``.
        """
        train_tags = [iob2_tags(sentence) for sentence in train_sentences]
        types = sorted({tag[2:] for tags in train_tags for tag in tags if tag != "O"})
        self.labels = ["O"] + [f"{prefix}-{type_}" for type_ in types for prefix in ("B", "I")]
        self.max_length = max_length
        set_seed(seed)  # the new classification head's initialisation depends on it
        self.model = AutoModelForTokenClassification.from_pretrained(
            self.encoder,
            num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)),
            label2id={label: i for i, label in enumerate(self.labels)},
        )
        # like NAG-NER's training (nagner.training.TrainingOptions.train_word_embeddings): the input
        # word-embedding matrix stays frozen, so both systems fine-tune the same parameters
        self.model.get_input_embeddings().weight.requires_grad_(False)
        dataset = [
            self.encode(sentence.words, tags).features
            for sentence, tags in zip(train_sentences, train_tags, strict=True)
        ]
        callbacks = [_KeepBestOnDev(self, dev_sentences)] if dev_sentences else []
        with tempfile.TemporaryDirectory() as output_dir:
            args = TrainingArguments(
                output_dir=output_dir,
                num_train_epochs=epochs,
                learning_rate=lr,
                per_device_train_batch_size=batch_size,
                lr_scheduler_type="linear",
                warmup_steps=warmup_ratio,  # a float below 1 is a fraction of all steps
                weight_decay=weight_decay,
                optim="adamw_torch_fused",  # the same optimizer kernel as NAG-NER's training
                seed=seed,
                save_strategy="no",
                eval_strategy="no",
                logging_strategy="epoch",
                report_to="none",
                disable_tqdm=True,
            )
            trainer = Trainer(
                model=self.model,
                args=args,
                train_dataset=dataset,
                data_collator=DataCollatorForTokenClassification(self.tokenizer),
                processing_class=self.tokenizer,
                callbacks=callbacks,
            )
            output = trainer.train()
        self.model.eval()
        result = {"train_loss": output.training_loss, "dev_f1": [], "best_epoch": epochs}
        if callbacks:
            keeper = callbacks[0]
            self.model.load_state_dict(keeper.best_state)
            result.update(dev_f1=keeper.dev_f1, best_epoch=keeper.best_epoch)
        return result

    def save(self, folder: str | os.PathLike) -> None:
        """Model, tokenizer and label list in ``folder`` (`load` reads them back)."""
        import json
        from pathlib import Path

        self.model.save_pretrained(str(folder))
        self.tokenizer.save_pretrained(str(folder))
        (Path(folder) / "labels.json").write_text(json.dumps({"labels": self.labels, "max_length": self.max_length}))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> TokenClassificationBaseline:
        """A baseline saved with `save`, in eval mode."""
        import json
        from pathlib import Path

        baseline = cls(folder)
        meta = json.loads((Path(folder) / "labels.json").read_text())
        baseline.labels, baseline.max_length = meta["labels"], meta["max_length"]
        baseline.model = AutoModelForTokenClassification.from_pretrained(str(folder)).eval()
        return baseline

    @torch.inference_mode()
    def predict(self, sentences: Sequence[Sentence], batch_size: int = 64) -> list[list[Entity]]:
        """Entities of each sentence from the argmax label of every word's first sub-token.

        Sentences are batched by length with dynamic padding. Words without a sub-token (beyond
        ``max_length``, or dropped by the tokenizer) are predicted O; ``truncated_words`` and
        ``untokenized_words`` count them for this call.
        """
        if self.model is None:
            raise RuntimeError("train() the baseline before predict()")
        with evaluating(self.model):
            encoded = [self.encode(sentence.words) for sentence in sentences]
            self.truncated_words = sum(e.truncated_words for e in encoded)
            self.untokenized_words = sum(e.untokenized_words for e in encoded)
            order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].features["input_ids"]))
            predictions: list[list[Entity]] = [[] for _ in encoded]
            for begin in range(0, len(order), batch_size):
                batch_ids = order[begin : begin + batch_size]
                batch = self.tokenizer.pad([encoded[i].features for i in batch_ids], return_tensors="pt")
                logits = self.model(**batch.to(self.model.device)).logits  # (b, t, labels)
                label_ids = logits.argmax(-1).tolist()  # (b, t)
                for row, i in enumerate(batch_ids):
                    tags = [
                        "O" if position is None else self.labels[label_ids[row][position]]
                        for position in encoded[i].first_subtokens
                    ]
                    predictions[i] = [Entity.from_span(*span) for span in tags_to_spans(tags, "iob2")]
        return predictions


class _KeepBestOnDev(TrainerCallback):
    """After every epoch, scores the dev set with ``predict`` and keeps the best weights in memory."""

    def __init__(self, baseline: TokenClassificationBaseline, dev_sentences: Sequence[Sentence]):
        self.baseline = baseline
        self.dev_sentences = dev_sentences
        self.dev_f1: list[float] = []
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] = {}

    def on_epoch_end(self, args, state, control, **kwargs):
        predicted = self.baseline.predict(self.dev_sentences)
        f1 = evaluate_entities([s.entities for s in self.dev_sentences], predicted).f1
        self.dev_f1.append(f1)
        if not self.best_state or f1 > max(self.dev_f1[:-1]):
            self.best_epoch = len(self.dev_f1)
            model = self.baseline.model
            self.best_state = {key: value.detach().clone() for key, value in model.state_dict().items()}
