"""Fine-tune a seq2seq or causal LM on text-to-text examples (GEEK's sub-tasks), with a
`nagner.peft` adapter or in full, and save a folder `TransformersModel.from_pretrained` loads.

    examples (.source, .target[, .task]) ─encode─▶ ids ─collate (pad)─▶ AdapterTrainer ─▶ folder

The training targets are tokenised exactly as `TransformersModel.score` tokenises options (its
``target_ids``), so the likelihoods the agent compares are the ones the training raised.

Folder written (atomically: built in a hidden sibling folder, then renamed into place):

* with an adapter: ``adapter_config.json`` (naming ``base_model_name_or_path``),
  ``adapter_model.safetensors``, ``trained_modules.safetensors`` when ``trained_modules`` named
  base parameters to train in full (e.g. a warm start's fresh cross-attention), the tokenizer;
* without: the whole model (``config.json``, ``model.safetensors``, generation config), the tokenizer;
* both: ``training_summary.json`` (examples per task, trainable parameters, steps, seconds, losses).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import TrainerCallback, TrainingArguments, set_seed

from knowledge_qa.errors import QAInputError
from knowledge_qa.models.transformers_model import TRAINED_MODULES, TransformersModel, load_base
from nagner.common.atomic import atomic_folder
from nagner.peft import (
    AdapterTrainer,
    TrainingContext,
    attach,
    base_parameter_name,
    config_from_dict,
    is_adapter_parameter,
    save_adapter,
    training_callbacks,
)
from nagner.peft.prompt import prompt_extras, prompt_mask
from nagner.peft.targets import near_misses

logger = logging.getLogger(__name__)

SUMMARY_FILE = "training_summary.json"
IGNORE = -100  # label of positions that do not count in the loss
VALIDATION_EXAMPLES = 16  # examples an adapter's procedures score on (ALoRA's rank ablations)
VALIDATION_LOGITS_BUDGET = 2**27  # logits per forward while scoring (512 MiB in float32)


@dataclass
class FinetuneOptions:
    """How to fine-tune.

    ``adapter``: a `nagner.peft` config dict, e.g. ``{"method": "lora", "r": 16, "lora_alpha": 32,
    "target_modules": "all-linear"}`` (``method`` or ``nagner_method`` names the method); None
    trains the model itself. ``trained_modules``: regexes (``re.search``) on parameter names, as
    the plain model names them, of base parameters trained in full: beside an adapter, e.g. the
    fresh ``crossattention`` of a warm start (saved in ``trained_modules.safetensors``); without
    an adapter, only these parameters train (empty: all). ``max_steps`` > 0 overrides ``epochs``.
    """

    output_dir: str | Path
    epochs: float = 1.0
    learning_rate: float = 5e-4
    batch_size: int = 16
    max_source_tokens: int = 384
    max_target_tokens: int = 64
    adapter: dict[str, Any] | None = None
    trained_modules: list[str] = field(default_factory=list)
    seed: int = 0
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    logging_steps: int = 50
    progress_bar: bool = False
    max_steps: int = -1


@dataclass
class FinetuneResult:
    """A fine-tuned model in memory: what `save_finetuned` writes."""

    model: nn.Module
    tokenizer: Any
    base_name_or_path: str
    options: FinetuneOptions
    trained_modules: dict[str, str]  # parameter name in the (adapted) model → name in the plain model
    summary: dict[str, Any]


# ------------------------------------------------------------------------------------ parameters
def mark_trained_modules(model: nn.Module, patterns: Sequence[str]) -> dict[str, str]:
    """Make the base parameters whose plain name matches any of ``patterns`` (``re.search``)
    trainable; returns {name in ``model``: plain name}. Adapter parameters are never matched (the
    adapter file holds them). QAInputError when a pattern is not a regex or matches nothing."""
    # Every name of a tied parameter (T5's lm_head and shared embedding): a pattern may name either.
    parameters = dict(model.named_parameters(remove_duplicate=False))
    names = {name: base_parameter_name(name) for name in parameters if not is_adapter_parameter(name)}
    chosen: dict[str, str] = {}
    for pattern in patterns:
        try:
            regex = re.compile(pattern)
        except re.error as error:
            raise QAInputError(f"trained_modules: {pattern!r} is not a regular expression: {error}") from None
        hits = {name: plain for name, plain in names.items() if regex.search(plain)}
        if not hits:
            modules = {plain.rpartition(".")[0] for plain in names.values()}  # a tensor's own name says little
            near = near_misses(pattern, modules, limit=4)
            hint = f"; near: {', '.join(repr(n) for n in near)}" if near else ""
            raise QAInputError(f"trained_modules: no parameter matches {pattern!r}{hint}")
        chosen.update(hits)
    for name in chosen:
        parameters[name].requires_grad_(True)
    return chosen


# ------------------------------------------------------------------------------------ tokenising
def encode_examples(
    examples: Sequence[Any],
    scorer: TransformersModel,
    options: FinetuneOptions,
    *,
    with_prompt_mask: bool = False,
) -> list[dict[str, list[int]]]:
    """Token ids of every example (lists, unpadded).

    Seq2seq: ``input_ids`` / ``attention_mask`` of the source (cut at the right, as
    `TransformersModel` encodes prompts) and ``labels`` = ``scorer.target_ids(target, source)``.
    Causal: prompt ids (cut at the left, keeping the question's end and the cue) followed by
    ``target_ids(target, source)`` and EOS, one sequence; ``labels`` are IGNORE on the prompt. The prompt
    and target are tokenised apart, as `TransformersModel.score` does, not joined as one string
    (a BPE merge across the seam would train tokens the scorer never asks for).
    ``with_prompt_mask``: also a ``prompt_mask`` (1 on prompt tokens) for prompt-conditioned
    adapters (MiLoRA, PARA) on causal LMs.
    """
    tokenizer = scorer.tokenizer
    eos = _eos_id(scorer)
    features: list[dict[str, list[int]]] = []
    for index, example in enumerate(examples):
        source, target = getattr(example, "source", None), getattr(example, "target", None)
        if not isinstance(source, str) or not isinstance(target, str):
            kind = type(example).__name__
            raise QAInputError(f"example {index}: needs text .source and .target, got {kind}")
        answer = scorer.target_ids(target, source)[: options.max_target_tokens]
        if scorer.is_seq2seq:
            tokenizer.truncation_side = "right"
            prompt = tokenizer(source, truncation=True, max_length=options.max_source_tokens).input_ids
            if not answer:
                raise QAInputError(f"example {index}: the target {target!r} has no tokens")
            features.append({"input_ids": prompt, "attention_mask": [1] * len(prompt), "labels": answer})
            continue
        tokenizer.truncation_side = "left"
        prompt = tokenizer(source, truncation=True, max_length=options.max_source_tokens).input_ids
        if eos is not None and (not answer or answer[-1] != eos):
            answer = answer + [eos]  # teaches the model to stop after the answer when generating
        if not answer:
            raise QAInputError(f"example {index}: the target {target!r} has no tokens and the model no EOS")
        feature = {
            "input_ids": prompt + answer,
            "attention_mask": [1] * (len(prompt) + len(answer)),
            "labels": [IGNORE] * len(prompt) + answer,
        }
        if with_prompt_mask:
            feature["prompt_mask"] = [1] * len(prompt) + [0] * len(answer)
        features.append(feature)
    return features


def _eos_id(scorer: TransformersModel) -> int | None:
    """The causal LM's end-of-sequence id: the tokenizer's, else the model config's (a BERT
    tokenizer on a GPT-2 has none of its own)."""
    eos = scorer.tokenizer.eos_token_id
    if eos is None:
        eos = scorer.model.config.eos_token_id
    if isinstance(eos, list):  # some configs list several stop tokens: the first is the canonical one
        eos = eos[0] if eos else None
    return eos


class QACollator:
    """Pads a list of encoded examples to the longest (right side): ids with ``pad_id``, masks
    with 0, labels with IGNORE. Returns (B, L) tensors (seq2seq labels (B, T))."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: Sequence[Mapping[str, list[int]]]) -> dict[str, torch.Tensor]:
        fill = {"input_ids": self.pad_id, "labels": IGNORE}
        batch: dict[str, torch.Tensor] = {}
        for key in features[0]:
            width = max(len(f[key]) for f in features)
            value = fill.get(key, 0)
            batch[key] = torch.tensor([list(f[key]) + [value] * (width - len(f[key])) for f in features])
        return batch


# ----------------------------------------------------------------------------------- the trainer
class _QATrainer(AdapterTrainer):
    """`AdapterTrainer` that scopes a batch's ``prompt_mask`` to its forward pass (prompt-conditioned
    adapters on causal LMs must not pool the answer tokens) and keeps the last training loss."""

    last_loss: torch.Tensor | None = None

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any):
        mask = inputs.pop("prompt_mask", None)  # (B, L) or None
        if mask is None:
            result = super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
        else:
            with prompt_mask(getattr(model, "module", model), mask):
                result = super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
        if model.training:
            # Kept as a tensor: .item() every step would wait for the GPU.
            self.last_loss = (result[0] if return_outputs else result).detach()
        return result


def sequence_losses(model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
    """Per-example loss (n,): the mean cross entropy over each example's labelled tokens, of a
    seq2seq model (logits aligned with labels) or a causal LM (logits predict the next token).
    The ``loss_fn`` of the adapters' training procedures (ALoRA's rank ablations, MiLoRA's bi-level
    steps); a ``prompt_mask`` in the batch scopes prompt-conditioned routing to the prompt tokens."""
    mask = batch.get("prompt_mask")
    if mask is not None:
        with prompt_mask(model, mask):
            return sequence_losses(model, {k: v for k, v in batch.items() if k != "prompt_mask"})
    inputs = dict(batch)
    labels = inputs["labels"]  # (n, T)
    if model.config.is_encoder_decoder:
        logits = model(**inputs).logits  # (n, T, V); labels given so the model builds decoder inputs
    else:
        # Logits only from the position before the first answer token on: the prompt is most of
        # the sequence, and logits over the vocabulary dominate the ablations' cost.
        start = _first_scored_position(labels)
        del inputs["labels"]
        if "logits_to_keep" in inspect.signature(model.forward).parameters:
            logits = model(**inputs, logits_to_keep=labels.shape[1] - start).logits  # (n, T − start, V)
        else:
            logits = model(**inputs).logits[:, start:]
        logits, labels = logits[:, :-1], labels[:, start + 1 :]  # position t predicts token t+1
    losses = F.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE, reduction="none"
    ).view(labels.shape)  # (n, T')
    return losses.sum(-1) / (labels != IGNORE).sum(-1).clamp_min(1)


def _first_scored_position(labels: torch.Tensor) -> int:
    """The position before the earliest labelled token of a causal batch (labels (n, T))."""
    first = (labels != IGNORE).int().argmax(dim=-1).min()  # argmax: the first labelled index per row
    return max(int(first) - 1, 0)


def adapter_callbacks(
    model: nn.Module, validation: Mapping[str, torch.Tensor], steps_per_epoch: int, total_steps: int
) -> list[TrainerCallback]:
    """The training procedures the adapter's method declares (`nagner.peft.training_callbacks`),
    given ``validation`` scored with `sequence_losses`. Procedures that score several settings
    at once repeat that batch, and an LM's logits are (rows, tokens, vocab): the copies per forward
    are bounded by the logits' size, not by a fixed count as for a classifier."""
    rows, width = validation["labels"].shape
    if not model.config.is_encoder_decoder:
        width -= _first_scored_position(validation["labels"])
    logits_per_copy = rows * width * int(model.config.get_text_config().vocab_size)
    context = TrainingContext(
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        validation_batch=validation,
        loss_fn=sequence_losses,
        max_batch_copies=min(32, max(1, VALIDATION_LOGITS_BUDGET // logits_per_copy)),
    )
    return training_callbacks(model, context)


# ------------------------------------------------------------------------------------- training
def finetune_model(
    base_name_or_path: str, examples: Sequence[Any], options: FinetuneOptions
) -> FinetuneResult:
    """Train in memory (see `finetune`); `save_finetuned` writes the result."""
    if not examples:
        raise QAInputError("no training examples")
    output = Path(options.output_dir)
    if output.exists() and not output.is_dir():
        raise QAInputError("is a file; expected an output folder", output)
    set_seed(options.seed)  # before attaching: adapter initialisation draws random numbers
    model, tokenizer = load_base(base_name_or_path)
    if options.adapter is not None:
        config = _adapter_config(options.adapter)
        attach(model, config)  # freezes the base
        trained = mark_trained_modules(model, options.trained_modules)
    elif options.trained_modules:
        model.requires_grad_(False)
        trained = mark_trained_modules(model, options.trained_modules)
    else:
        model.requires_grad_(True)
        trained = {}

    scorer = TransformersModel(model, tokenizer)  # for its target tokenisation rule
    with_prompt_mask = not scorer.is_seq2seq and bool(prompt_extras(model))
    features = encode_examples(examples, scorer, options, with_prompt_mask=with_prompt_mask)
    collator = QACollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    args = TrainingArguments(
        output_dir=str(output),
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        learning_rate=options.learning_rate,
        per_device_train_batch_size=options.batch_size,
        weight_decay=options.weight_decay,
        warmup_steps=options.warmup_ratio,  # a float below 1 is a fraction of all steps
        lr_scheduler_type="linear",
        seed=options.seed,
        logging_steps=options.logging_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=not options.progress_bar,
        train_sampling_strategy="group_by_length",  # similar lengths share a batch: less padding
        remove_unused_columns=False,  # the collator builds exactly the model's inputs
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = _QATrainer(model=model, args=args, train_dataset=features, data_collator=collator)
    steps_per_epoch = max(1, math.ceil(len(features) / (options.batch_size * max(1, args.world_size))))
    total_steps = options.max_steps if options.max_steps > 0 else math.ceil(steps_per_epoch * options.epochs)
    if options.adapter is not None:
        validation = collator(features[:VALIDATION_EXAMPLES])  # (B, L) tensors
        for callback in adapter_callbacks(model, validation, steps_per_epoch, total_steps):
            trainer.add_callback(callback)

    began = time.perf_counter()
    outcome = trainer.train()
    seconds = time.perf_counter() - began
    model.eval()
    # Tasks may be strings or enums; count enums by value so the JSON reads the same.
    tasks = Counter(str(getattr(e.task, "value", e.task)) for e in examples if hasattr(e, "task"))
    summary = {
        "base_model": base_name_or_path,
        "kind": "seq2seq" if scorer.is_seq2seq else "causal",
        "adapter": config.to_dict() if options.adapter is not None else None,
        "trained_modules": list(options.trained_modules),
        "trained_module_tensors": len(trained),
        "examples": len(features),
        "examples_by_task": dict(sorted(tasks.items())),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_seconds": round(seconds, 3),
        "train_loss": outcome.training_loss,  # mean over all steps
        "final_loss": float(trainer.last_loss) if trainer.last_loss is not None else None,  # the last step's
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(options).items()},
    }
    return FinetuneResult(model, tokenizer, base_name_or_path, options, trained, summary)


def _adapter_config(values: Mapping[str, Any]) -> Any:
    """The `nagner.peft` config of an options dict: ``method`` is accepted for ``nagner_method``."""
    values = dict(values)
    method = values.pop("method", None)
    if method is not None:
        values.setdefault("nagner_method", method)
    try:
        return config_from_dict(values, source="FinetuneOptions.adapter")
    except (ValueError, TypeError) as error:
        raise QAInputError(f"adapter: {error}") from None


# --------------------------------------------------------------------------------------- saving
def save_finetuned(result: FinetuneResult, output_dir: str | Path | None = None) -> Path:
    """Write ``result`` into ``output_dir`` (default: its options' folder) as the module docstring
    describes, replacing an existing folder only once the new one is complete. Returns the folder."""
    from safetensors.torch import save_file

    target = Path(output_dir if output_dir is not None else result.options.output_dir)
    with atomic_folder(target) as folder:
        if result.options.adapter is not None:
            base = _base_reference(result.base_name_or_path)
            save_adapter(result.model, folder, base_model_name_or_path=base)
            if result.trained_modules:
                parameters = dict(result.model.named_parameters(remove_duplicate=False))
                # Copies: safetensors refuses tensors sharing memory, as tied parameters do.
                tensors = {
                    plain: parameters[name].detach().to("cpu", copy=True).contiguous()
                    for name, plain in result.trained_modules.items()
                }
                save_file(tensors, str(folder / TRAINED_MODULES), metadata={"format": "pt"})
        else:
            result.model.save_pretrained(folder)
        result.tokenizer.save_pretrained(folder)
        (folder / SUMMARY_FILE).write_text(json.dumps(result.summary, indent=2) + "\n", encoding="utf-8")
    return target


def _base_reference(base: str) -> str:
    """What the adapter folder names as its base: a local folder as an absolute path (so the
    adapter loads from any working directory), a hub name as it is."""
    path = Path(base)
    return str(path.resolve()) if path.is_dir() else base


def finetune(base_name_or_path: str, examples: Sequence[Any], options: FinetuneOptions) -> Path:
    """Fine-tune ``base_name_or_path`` (a seq2seq or causal LM folder or hub name) on ``examples``
    (objects with ``.source`` and ``.target`` text, optionally ``.task``) and save the result into
    ``options.output_dir`` (see the module docstring for the files). With ``options.adapter`` the
    base is frozen and only the adapter (plus ``trained_modules``) trains; SoRA and ALoRA get their
    training procedures. Returns the output folder."""
    return save_finetuned(finetune_model(base_name_or_path, examples, options))
