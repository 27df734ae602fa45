"""Fine-tuning a `NagNerModel` with the transformers `Trainer`.

    sentences ─encode_sentences─▶ features ─NagNerCollator─▶ batches ─Trainer(model.forward → loss)─▶ weights
    every epoch end: dev ─predict_sentences─▶ entities ─evaluate_entities─▶ F1 ─best so far?─▶ output_dir/best
    after training:  best ─tune_decoding(dev)─▶ start threshold, beam, END bias, score threshold ─▶ best/config.json

Files under ``output_dir``:

* ``best/`` — the model to use (config, safetensors weights, tokenizer). With a dev set it is the
  epoch with the highest dev F1; without one it is the final model (the last epoch is the best we
  know). With a dev set its decoding settings are tuned on dev (`nagner.modeling.tuning`) and saved
  in its config. ``train_model`` returns this model, reloaded.
* ``metrics.jsonl`` — one JSON line per epoch: epoch, step, train_loss, dev_f1, dev_precision,
  dev_recall (None without dev) and seconds. Rewritten whole (never half-written) after every epoch.
* ``checkpoint-<step>/`` — the Trainer's own checkpoint of the last epoch (weights, optimizer,
  scheduler, RNG states) for ``resume_from_checkpoint``; only the newest is kept.

Runs unchanged under ``torchrun --nproc_per_node N`` (gloo on CPU): every process trains its shard,
process zero evaluates, saves and writes files, and all processes return the same best model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

import nagner.peft as nagner_peft
from nagner.checkpoint import load_checkpoint, no_transformers_progress_bars
from nagner.common.atomic import atomic_folder, atomic_outputs
from nagner.data.example import Sentence
from nagner.errors import NagNerInputError
from nagner.evaluation import evaluate_entities
from nagner.modeling import NagNerCollator, NagNerModel, encode_sentences
from nagner.modeling.encoding import EncodingReport
from nagner.modeling.tuning import tune_decoding
from nagner.peft import AdapterTrainer

logger = logging.getLogger(__name__)

BEST_DIR = "best"
METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainingOptions:
    """How to train. Learning rates: ``learning_rate`` for the pretrained encoder,
    ``head_learning_rate`` for the detector and decoder (trained from scratch).

    ``resume_from_checkpoint``: None (start fresh), True (the newest ``checkpoint-*`` in
    ``output_dir``) or a checkpoint folder. ``max_steps`` > 0 overrides ``epochs``.
    ``ddp_backend``: None picks gloo on CPU (nccl on GPU) when run under torchrun.
    ``tune_decoding``: with dev sentences, choose the decoding settings (start threshold, beam,
    END bias, score threshold) of the best model on dev (`nagner.modeling.tuning`) and save them
    in its config.
    ``callbacks``: extra `TrainerCallback`s, e.g. an adapter's training procedure (SoRA's proximal
    step, ALoRA's allocation rounds; `nagner.peft` provides them).
    ``train_word_embeddings``: False (default) freezes the encoder's input word-embedding matrix.
    It is half of a MiniLM/BERT-small encoder's parameters but receives gradient only for the
    words of a batch; AdamW still reads and writes all of it every step, which on CPU costs more
    than the forward and backward passes (measured here: 2.2 s vs 0.3 s per fused AdamW step for
    all-MiniLM-L6-v2). Freezing it is a common fine-tuning choice for NER and keeps words unseen in
    training where pretraining put them.
    """

    output_dir: str | Path
    epochs: float = 3
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    batch_size: int = 16
    eval_batch_size: int = 64
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 42
    max_steps: int = -1
    logging_steps: int = 50
    save_checkpoints: bool = True
    resume_from_checkpoint: bool | str | Path | None = None
    progress_bar: bool = True
    ddp_backend: str | None = None
    train_word_embeddings: bool = False
    tune_decoding: bool = True
    callbacks: list[TrainerCallback] = field(default_factory=list)


@dataclass
class TrainResult:
    """What `train_model` did. ``model`` is the best model (reloaded from ``best_dir``), in eval mode.

    ``history`` holds one dict per epoch (also the epochs before a resume), as in ``metrics.jsonl``.
    ``best_dev_f1`` / ``best_epoch`` are None without a dev set. ``decoding``: the decoding settings
    tuned on dev and their dev scores (None when not tuned).
    """

    model: NagNerModel
    history: list[dict[str, Any]]
    best_dev_f1: float | None
    best_epoch: float | None
    best_dir: Path
    train_seconds: float
    global_step: int
    encoding: EncodingReport = field(default_factory=EncodingReport)
    decoding: dict[str, Any] | None = None


def data_settings(train_sentences: list[Sentence], max_pointers_cap: int = 8) -> dict[str, Any]:
    """Config settings that follow from the training data:

    * ``max_pointers``: 2 × the most fragments of a training entity (capped at ``max_pointers_cap``;
      entities beyond it are reported by the encoder), so flat data runs 2 pointer positions, not 8;
    * ``min_slots_per_start``: 2 where some entities share their start word (a second slot is
      always there to hold one; surplus slots learn NONE), else 1;
    * ``overlap``: "flat" (keep the best non-overlapping entities) when no two entities of a
      sentence share a word and none is discontinuous, else "any".
    """
    fragments, shared_start, overlapping = 1, False, False
    for sentence in train_sentences:
        entities = sorted(set(sentence.entities))
        starts: set[int] = set()
        taken: set[int] = set()
        for entity in entities:
            fragments = max(fragments, len(entity.fragments))
            shared_start |= entity.start in starts
            overlapping |= entity.is_discontinuous or not taken.isdisjoint(entity.indices)
            starts.add(entity.start)
            taken.update(entity.indices)
    return {
        "max_pointers": min(2 * fragments, max_pointers_cap),
        "min_slots_per_start": 2 if shared_start else 1,
        "overlap": "any" if overlapping else "flat",
    }


def build_model(
    encoder: str | Path, train_sentences: list[Sentence], seed: int | None = None, **config_kwargs: Any
) -> NagNerModel:
    """A fresh `NagNerModel` on ``encoder`` whose label set is the sorted entity types of the training data.

    Pointer positions, slots per start and the overlap mode follow from the data (`data_settings`)
    unless ``config_kwargs`` set them; ``seed`` (if given) seeds the heads' initialisation;
    ``config_kwargs`` go to `NagNerConfig`.
    Raises NagNerInputError when the training data has no sentences or no entities.
    """
    if not train_sentences:
        raise NagNerInputError("the training set has no sentences")
    types = sorted({entity.type for sentence in train_sentences for entity in sentence.entities})
    if not types:
        raise NagNerInputError("the training set has no entities, so there is no label set to learn")
    if seed is not None:
        set_seed(seed)
    settings = {**data_settings(train_sentences), **config_kwargs}
    return NagNerModel.from_encoder(encoder, types, **settings)


class NagNerTrainer(AdapterTrainer):
    """`AdapterTrainer` (an adapter's own loss terms, counted once per optimizer step) with AdamW
    over two learning rates (encoder / heads) and per-epoch mean loss tracking."""

    def __init__(self, *args: Any, head_learning_rate: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.head_learning_rate = head_learning_rate
        self.epoch_loss = torch.zeros(2)  # (sum of batch losses, batches) since the epoch began

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """AdamW with encoder parameters at ``args.learning_rate`` and head parameters at ``head_learning_rate``;
        biases and norms without weight decay. The scheduler (linear warmup/decay) scales both groups alike."""
        if self.optimizer is None:
            net = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(net))
            encoder_ids = {id(p) for p in net.encoder_parameters()}
            head_ids = {id(p) for p in net.head_parameters()}
            groups = []
            for ids, lr in ((encoder_ids, self.args.learning_rate), (head_ids, self.head_learning_rate)):
                for decayed in (True, False):
                    params = [
                        p for n, p in net.named_parameters()
                        if id(p) in ids and (n in decay) == decayed and p.requires_grad
                    ]
                    if params:
                        groups.append({
                            "params": params, "lr": lr, "weight_decay": self.args.weight_decay if decayed else 0.0,
                        })
            # fused: one kernel per step instead of one per tensor and operation (about 3x faster on CPU)
            self.optimizer = torch.optim.AdamW(
                groups, betas=(self.args.adam_beta1, self.args.adam_beta2), eps=self.args.adam_epsilon, fused=True
            )
        return self.optimizer

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        """With an adapter the checkpoint holds adapter + heads only: load exactly those (the
        Trainer's own loader would warn about every frozen encoder weight)."""
        net = self.model if model is None else model
        if net.config.adapter is None:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
        else:
            net.load_trainable_state(Path(resume_from_checkpoint) / "model.safetensors")

    def compute_loss(
        self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any
    ) -> Any:
        """The model's own loss; training batches are also summed for the epoch's mean loss."""
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
        if model.training:
            loss = result[0] if return_outputs else result
            self.epoch_loss += torch.stack([loss.detach().float().cpu(), torch.ones(())])
        return result

    def pop_epoch_loss(self) -> float:
        """Mean training loss of the epoch over all processes, and reset the running sum."""
        totals = self.accelerator.reduce(self.epoch_loss.to(self.args.device), reduction="sum").cpu()
        self.epoch_loss = torch.zeros(2)
        return float(totals[0] / totals[1]) if totals[1] > 0 else math.nan


class EpochEvaluation(TrainerCallback):
    """At every epoch end: mean train loss, dev scores, best model to ``best/``, a ``metrics.jsonl`` line.

    Only world process zero evaluates and writes; the others wait for it at their next collective.
    """

    def __init__(
        self,
        trainer: NagNerTrainer,
        model: NagNerModel,
        dev_sentences: list[Sentence] | None,
        output_dir: Path,
        eval_batch_size: int,
        history: list[dict[str, Any]],
    ):
        self.trainer = trainer
        self.model = model
        self.dev_sentences = dev_sentences
        self.output_dir = output_dir
        self.eval_batch_size = eval_batch_size
        self.history = history
        self.epoch_began = time.perf_counter()

    def on_epoch_begin(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        self.epoch_began = time.perf_counter()

    def on_epoch_end(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        train_loss = self.trainer.pop_epoch_loss()  # a collective: every process takes part
        if not state.is_world_process_zero:
            return
        record: dict[str, Any] = {
            "epoch": round(state.epoch, 4),
            "step": state.global_step,
            "train_loss": train_loss,
            "dev_f1": None,
            "dev_precision": None,
            "dev_recall": None,
        }
        if self.dev_sentences:
            predicted = self.model.predict_sentences(self.dev_sentences, batch_size=self.eval_batch_size)
            metrics = evaluate_entities([s.entities for s in self.dev_sentences], predicted)
            record.update(dev_f1=metrics.f1, dev_precision=metrics.precision, dev_recall=metrics.recall)
            best = best_record(self.history)
            if best is None or metrics.f1 > best["dev_f1"]:
                save_model_atomically(self.model, self.output_dir / BEST_DIR)
        record["seconds"] = round(time.perf_counter() - self.epoch_began, 3)
        self.history.append(record)
        write_metrics(self.history, self.output_dir / METRICS_FILE)
        logger.info(
            "epoch %s (step %d): train loss %.4f%s", record["epoch"], record["step"], train_loss,
            f", dev F1 {record['dev_f1']:.4f} (P {record['dev_precision']:.4f}, R {record['dev_recall']:.4f})"
            if self.dev_sentences else "",
        )


def best_record(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The epoch with the highest dev F1 (the earliest on ties), or None when no epoch has a dev F1."""
    scored = [r for r in history if r.get("dev_f1") is not None]
    return max(scored, key=lambda r: r["dev_f1"]) if scored else None


def write_metrics(history: list[dict[str, Any]], path: Path) -> None:
    """Write ``history`` as JSON lines through a temporary file, so the file is never half-written."""
    with atomic_outputs([path]) as (out,):
        out.write("".join(json.dumps(r) + "\n" for r in history))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (empty if it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def save_model_atomically(model: NagNerModel, target: Path) -> None:
    """``model.save_pretrained(target)`` via a sibling folder and renames: ``target`` is never half-written."""
    with atomic_folder(target) as folder:
        model.save_pretrained(folder)


def resolve_checkpoint(output_dir: Path, resume: bool | str | Path | None) -> str | None:
    """The checkpoint folder to resume from, or None; NagNerInputError when it is missing."""
    if resume is None or resume is False:
        return None
    if resume is True:
        found = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
        if found is None:
            raise NagNerInputError("no checkpoint-* folder to resume from", output_dir)
        return found
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise NagNerInputError("not a training checkpoint (no trainer_state.json)", path)
    return str(path)


def checkpoint_step(checkpoint: str) -> int:
    """The global step a Trainer checkpoint was saved at."""
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    return int(state["global_step"])


def check_checkpoint_labels(checkpoint: str, model: NagNerModel) -> None:
    """NagNerInputError when the checkpoint was trained with another label set than ``model``'s."""
    config_path = Path(checkpoint) / "config.json"
    if not config_path.is_file():
        return
    types = json.loads(config_path.read_text(encoding="utf-8")).get("entity_types")
    if types is not None and types != model.config.entity_types:
        raise NagNerInputError(
            f"the checkpoint's entity types {types} differ from the training data's {model.config.entity_types}",
            checkpoint,
        )


def adapter_callbacks(
    model: NagNerModel, validation: list[dict[str, Any]], collator: NagNerCollator, steps_per_epoch: int, total_steps: int
) -> list[TrainerCallback]:
    """The training procedures the model's adapter method declares (`nagner.peft.training_callbacks`),
    given a validation batch of up to 32 windows scored with the per-sentence NAG-NER loss (heads in
    eval mode, so dropout does not blur the comparisons)."""

    def sentence_losses(_encoder: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        training = model.training
        model.eval()
        try:
            return model(**inputs, per_sentence=True).loss
        finally:
            model.train(training)

    context = nagner_peft.TrainingContext(
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        validation_batch=collator(validation[:32]),
        loss_fn=sentence_losses,
        adapted_module=model.encoder,
    )
    return nagner_peft.training_callbacks(model, context)


def train_model(
    model: NagNerModel,
    train_sentences: list[Sentence],
    dev_sentences: list[Sentence] | None = None,
    options: TrainingOptions | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_sentences``; with ``dev_sentences``, keep the epoch of best dev F1.

    Entities that cannot be training targets (too many fragments, too many per start word, longer
    than a window) are counted in ``TrainResult.encoding`` and logged as a warning. Returns the
    best model reloaded from ``output_dir/best`` (see the module docstring for the files written).
    """
    if options is None:
        raise TypeError("train_model needs options=TrainingOptions(output_dir=...)")
    if not train_sentences:
        raise NagNerInputError("the training set has no sentences")
    if model.tokenizer is None:
        raise ValueError("this model has no tokenizer; build it with build_model / NagNerModel.from_encoder")
    output_dir = Path(options.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NagNerInputError("is a file; expected an output folder", output_dir)
    checkpoint = resolve_checkpoint(output_dir, options.resume_from_checkpoint)
    if checkpoint is not None:
        check_checkpoint_labels(checkpoint, model)
    output_dir.mkdir(parents=True, exist_ok=True)

    if model.config.adapter is None:  # with an adapter the whole encoder stays frozen
        model.encoder.get_input_embeddings().weight.requires_grad_(options.train_word_embeddings)
    features, report = encode_sentences(train_sentences, model.tokenizer, model.config, with_targets=True)
    features = [f for f in features if f["word_first"]]  # a window without words holds no targets
    args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        learning_rate=options.learning_rate,
        per_device_train_batch_size=options.batch_size,
        lr_scheduler_type="linear",
        warmup_steps=options.warmup_ratio,  # a float below 1 is a fraction of all steps
        weight_decay=options.weight_decay,
        max_grad_norm=options.max_grad_norm,
        seed=options.seed,
        logging_steps=options.logging_steps,
        save_strategy="epoch" if options.save_checkpoints else "no",
        save_total_limit=1,
        eval_strategy="no",
        report_to="none",
        disable_tqdm=not options.progress_bar,
        train_sampling_strategy="group_by_length",  # similar lengths share a batch: less padding
        remove_unused_columns=False,  # the collator picks its keys
        label_names=["entity_starts", "entity_pointers", "entity_types"],
        use_cpu=_distributed_on_cpu(),  # else accelerate does not set up DDP for CPU processes
        ddp_backend=options.ddp_backend or ("gloo" if _distributed_on_cpu() else None),
        ddp_find_unused_parameters=True,  # e.g. the encoder's pooler gets no gradient
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    collator = NagNerCollator(model.tokenizer.pad_token_id or 0, model.config.max_pointers)
    trainer = NagNerTrainer(
        model=model,
        args=args,
        train_dataset=features,  # a list is a map-style dataset
        data_collator=collator,
        head_learning_rate=options.head_learning_rate,
    )
    history: list[dict[str, Any]] = []
    if checkpoint is not None:  # epochs after the checkpoint are trained again
        history = [r for r in read_metrics(output_dir / METRICS_FILE) if r["step"] <= checkpoint_step(checkpoint)]
    trainer.add_callback(
        EpochEvaluation(trainer, model, dev_sentences, output_dir, options.eval_batch_size, history)
    )
    if not options.progress_bar:
        trainer.remove_callback(PrinterCallback)  # the epoch lines say it; no raw log dicts on stdout
    for callback in options.callbacks:
        trainer.add_callback(callback)
    if model.config.adapter is not None:
        validation = features
        if dev_sentences:
            validation, _ = encode_sentences(dev_sentences[:64], model.tokenizer, model.config, with_targets=True)
            validation = [f for f in validation if f["word_first"]] or features
        world = max(1, args.world_size)
        steps_per_epoch = max(1, math.ceil(len(features) / (options.batch_size * world)))
        total_steps = options.max_steps if options.max_steps > 0 else math.ceil(steps_per_epoch * options.epochs)
        for callback in adapter_callbacks(model, validation, collator, steps_per_epoch, total_steps):
            trainer.add_callback(callback)

    began = time.perf_counter()
    with no_transformers_progress_bars():  # no "Writing model shards" bar at every save
        trainer.train(resume_from_checkpoint=checkpoint)
        train_seconds = time.perf_counter() - began
        return _finish(trainer, model, dev_sentences, options, output_dir, report, train_seconds, history)


def _finish(
    trainer: Trainer, model: NagNerModel, dev_sentences: list[Sentence] | None, options: TrainingOptions,
    output_dir: Path, report: EncodingReport, train_seconds: float, history: list[dict[str, Any]],
) -> TrainResult:
    """After training: tune decoding on dev, save best/, reload it and sum up the run."""
    best_dir = output_dir / BEST_DIR
    decoding = None
    if trainer.is_world_process_zero():
        if not dev_sentences:
            save_model_atomically(model, best_dir)
        elif options.tune_decoding:
            tuned = load_checkpoint(best_dir, device=str(model.device))
            choice, _ = tune_decoding(tuned, dev_sentences, batch_size=options.eval_batch_size)
            decoding = {**choice.settings(), "dev_f1": choice.f1, "dev_precision": choice.precision,
                        "dev_recall": choice.recall}
            save_model_atomically(tuned, best_dir)
        write_metrics(history, output_dir / METRICS_FILE)
    trainer.accelerator.wait_for_everyone()

    history = read_metrics(output_dir / METRICS_FILE)  # the same on every process
    best = best_record(history)
    best_model = load_checkpoint(best_dir, device=str(model.device))
    return TrainResult(
        model=best_model,
        history=history,
        best_dev_f1=best["dev_f1"] if best else None,
        best_epoch=best["epoch"] if best else None,
        best_dir=best_dir,
        train_seconds=train_seconds,
        global_step=trainer.state.global_step,
        encoding=report,
        decoding=decoding,
    )


def _distributed_on_cpu() -> bool:
    """Several processes (torchrun) and no GPU: DDP on CPU, which needs ``use_cpu`` and gloo."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
