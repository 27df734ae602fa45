"""Compress the agent's generative models (the core / extractor model of `knowledge-qa train`, or any
seq2seq or causal LM the agent runs) with `nagner.compression`: SIMPLE structured pruning or
QuantGPT quantization-aware training (PACT and min–max as baselines), trained on the same
StrategyQA examples, encoded exactly as `knowledge-qa train` encodes them.

The result is a plain transformers folder (an adapter is merged first): ``--core FOLDER`` runs it in
the agent unchanged. A pruned model is smaller and faster; a quantized one holds ``bits``-bit weight
values (stored as float: the bit count is what `compression.json` reports; activations run in full
precision in the agent). A seeded tenth of the examples (at most 200) is held out of training and
scores the teacher and the compressed model (teacher-forced loss, `compression.json`).
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from knowledge_qa.errors import QAInputError
from knowledge_qa.near_duplicates import check_threshold, drop_near_duplicates
from knowledge_qa.strategyqa import read_questions
from knowledge_qa.training.examples import core_examples

METHODS = ("simple", "quantgpt", "pact", "minmax")


@dataclass
class CompressionRecipe:
    model: str  # model folder, hub name or `knowledge-qa train` adapter folder
    questions: str  # StrategyQA training questions
    output: str
    method: str = "simple"
    reduction: float = 0.48  # simple: share of parameters removed
    bits: int = 4  # quantization: weight bits
    activation_bits: int | None = 8
    granularity: str = "tensor"  # quantization: one clip per weight tensor, or "channel"
    steps: int = 300  # fine-tuning (simple) or QAT steps
    mask_steps: int = 300  # simple: mask-learning steps
    learning_rate: float | None = None
    batch_size: int = 8
    max_examples: int = 2000
    max_source_tokens: int = 384
    held_out: list[str] = field(default_factory=list)
    near_duplicate_threshold: float = 0.5
    seed: int = 0


def check_compression_recipe(recipe: CompressionRecipe) -> None:
    if recipe.method not in METHODS:
        raise QAInputError(f"unknown method {recipe.method!r}; choose from {', '.join(METHODS)}")
    if not 0 < recipe.reduction < 1:
        raise QAInputError(f"--reduction must be between 0 and 1 (a share of parameters removed), got {recipe.reduction}")
    if not 2 <= recipe.bits <= 8:
        raise QAInputError(f"--bits must be between 2 and 8, got {recipe.bits}")
    if recipe.granularity not in ("tensor", "channel"):
        raise QAInputError(f"--granularity must be tensor or channel, got {recipe.granularity!r}")
    check_threshold(recipe.near_duplicate_threshold)
    if Path(recipe.output).exists() and not Path(recipe.output).is_dir():
        raise QAInputError("exists and is not a folder", recipe.output)


def compression_examples(recipe: CompressionRecipe) -> tuple[list, list]:
    """(training, held-out scoring) examples: the core model's examples of ``recipe.questions``
    without near-duplicates of the ``held_out`` questions, a seeded sample of ``max_examples``."""
    questions = read_questions(recipe.questions)
    held_out = [q for path in recipe.held_out for q in read_questions(path)]
    kept, _ = drop_near_duplicates(
        questions, [q.question for q in questions], [q.question for q in held_out], recipe.near_duplicate_threshold
    )
    examples = list(dict.fromkeys(core_examples(kept) + core_examples(kept, with_decomposition=False)))
    if len(examples) < 2:
        raise QAInputError("fewer than 2 training examples could be made (questions need answers)", recipe.questions)
    rng = random.Random(recipe.seed)
    rng.shuffle(examples)
    examples = examples[: recipe.max_examples]
    scoring = max(1, min(200, len(examples) // 10))
    return examples[scoring:], examples[:scoring]


def _batches(examples: Sequence, scorer, recipe: CompressionRecipe) -> list[dict]:
    from knowledge_qa.training.finetune import FinetuneOptions, QACollator, encode_examples

    options = FinetuneOptions(output_dir=recipe.output, max_source_tokens=recipe.max_source_tokens)
    features = encode_examples(examples, scorer, options)
    collate = QACollator(scorer.tokenizer.pad_token_id)
    return [collate(features[i : i + recipe.batch_size]) for i in range(0, len(features), recipe.batch_size)]


def compress_agent_model(recipe: CompressionRecipe, log: Callable[[str], None] = print) -> dict:
    """Compress ``recipe.model`` and save it (with its tokenizer and ``compression.json``) to
    ``recipe.output``, atomically. Returns the report."""
    from knowledge_qa.models.transformers_model import TransformersModel
    from nagner.common.atomic import atomic_folder
    from nagner.compression.language_modeling import language_model_loss
    from nagner.peft import merge_and_unload
    from nagner.peft.attach import peft_state

    check_compression_recipe(recipe)
    train_examples, scoring_examples = compression_examples(recipe)
    try:
        scorer = TransformersModel.from_pretrained(recipe.model, device="cpu")
    except OSError as error:
        raise QAInputError(f"cannot load {recipe.model!r}: {error}") from None
    teacher = scorer.model
    state = peft_state(teacher)
    if state is not None and state.configs:  # an adapter folder: merge it into the base weights
        teacher = merge_and_unload(teacher)
    teacher.eval()
    train, scoring = _batches(train_examples, scorer, recipe), _batches(scoring_examples, scorer, recipe)
    log(f"{recipe.method}: {len(train_examples)} training examples, {len(scoring_examples)} held out for scoring")
    with warnings.catch_warnings():
        # EncoderDecoderModel warns on every forward with labels that it builds the decoder inputs
        # itself, which is what we want.
        warnings.filterwarnings("ignore", message="Version v4.12.0 introduces", category=FutureWarning)
        report: dict = {"recipe": asdict(recipe), "teacher_loss": language_model_loss(teacher, scoring)}
        if recipe.method == "simple":
            compressed, details = _prune(teacher, train, recipe)
        else:
            compressed, details = _quantize(teacher, train, recipe)
        report.update(details)
        report["compressed_loss"] = language_model_loss(compressed, scoring)
    with atomic_folder(recipe.output) as folder:
        compressed.save_pretrained(folder)
        scorer.tokenizer.save_pretrained(folder)
        (folder / "compression.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"held-out loss {report['teacher_loss']['loss']:.4f} → {report['compressed_loss']['loss']:.4f}; saved to {recipe.output}")
    return report


def _prune(teacher, batches, recipe: CompressionRecipe):
    from nagner.compression.simple import SimpleOptions, prune_with_simple

    options = SimpleOptions(mask_steps=recipe.mask_steps, finetune_steps=recipe.steps, seed=recipe.seed)
    if recipe.learning_rate is not None:
        options.finetune_learning_rate = recipe.learning_rate
    try:
        return prune_with_simple(teacher, batches, recipe.reduction, options)
    except ValueError as error:  # an architecture SIMPLE does not support
        raise QAInputError(str(error)) from None


def _quantize(teacher, batches, recipe: CompressionRecipe):
    from nagner.compression.quantgpt import QuantOptions, fold_quantized, quantize_with_qat

    options = QuantOptions(method=recipe.method, bits=recipe.bits, activation_bits=recipe.activation_bits,
                           granularity=recipe.granularity, steps=recipe.steps, seed=recipe.seed)
    if recipe.learning_rate is not None:
        options.learning_rate = recipe.learning_rate
    student, details = quantize_with_qat(teacher, batches, options)  # details["storage"]: the bit count
    return fold_quantized(student), details
