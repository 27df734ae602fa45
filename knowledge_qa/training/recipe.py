"""The training recipe of `knowledge-qa train`: from StrategyQA-format questions to fine-tuned core
and extractor models, one call that the command line and the benchmark share.

For the core model both trajectories of every question (with AddDecomp, and the question as its own
sub-question) make examples, so one model serves the agent and its no-decomposition ablation;
``extra_questions`` (answers only) add FinalAnswer examples. The extractor learns from the passages
the questions' evidence cites. Questions that are near-duplicates of any ``held_out`` question (the
evaluation splits; `knowledge_qa.near_duplicates`) are removed from every source before any example is
made, and ``output/training_data.json`` records what was removed and why. With ``warm_start`` the base is an encoder-decoder built from a
BERT-style encoder (saved once in ``output/base``), whose new modules train in full beside the adapter.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knowledge_qa.errors import QAInputError
from knowledge_qa.near_duplicates import DEFAULT_THRESHOLD, check_threshold, drop_near_duplicates
from knowledge_qa.strategyqa import StrategyQuestion, read_questions
from knowledge_qa.training.examples import (
    TASKS,
    core_examples,
    example_counts,
    extractor_examples,
    final_answer_examples,
)
from nagner.common.atomic import atomic_outputs

ROLES = ("core", "extractor", "both")
DEFAULT_WARM_START = "default"  # warm_start value: the packaged all-MiniLM-L6-v2


@dataclass
class TrainingRecipe:
    """What `train_agent_models` trains (each field is the `knowledge-qa train` flag of that name).

    ``base`` (a seq2seq or causal LM) or ``warm_start`` (a BERT-style encoder, or
    ``DEFAULT_WARM_START``), exactly one. ``adapter``: a `nagner.peft` config dict, None for full
    fine-tuning. ``trained_modules``: regexes of parameters trained in full beside the adapter (None:
    with a warm start, its fresh modules). ``max_examples_per_task``: ``{task or "*": N}``, a seeded
    sample. ``tasks``: train on these tasks only.
    """

    questions: str
    output: str
    corpus: str | None = None
    base: str | None = None
    warm_start: str | None = None
    role: str = "both"
    adapter: dict[str, Any] | None = None
    trained_modules: list[str] | None = None
    epochs: float = 3.0
    learning_rate: float = 5e-4
    batch_size: int = 16
    extra_questions: str | None = None
    max_examples_per_task: dict[str, int] = field(default_factory=dict)
    tasks: list[str] | None = None
    max_source_tokens: int = 384
    seed: int = 0
    held_out: list[str] = field(default_factory=list)
    near_duplicate_threshold: float = DEFAULT_THRESHOLD


def check_recipe(recipe: TrainingRecipe) -> None:
    """QAInputError for a recipe that cannot run (before any file is read or model loaded)."""
    unknown = sorted(set(recipe.tasks or []) - set(TASKS))
    if unknown:
        raise QAInputError(f"unknown --tasks {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    unknown = sorted(set(recipe.max_examples_per_task) - set(TASKS) - {"*"})
    if unknown:
        raise QAInputError(f"unknown task {', '.join(unknown)} in --max-examples-per-task; tasks: {', '.join(TASKS)}")
    if recipe.role not in ROLES:
        raise QAInputError(f"unknown --role {recipe.role!r}; roles: {', '.join(ROLES)}")
    if bool(recipe.base) == bool(recipe.warm_start):
        raise QAInputError("give exactly one of --base MODEL and --warm-start [ENCODER]")
    output = Path(recipe.output)
    if output.exists() and not output.is_dir():
        raise QAInputError("exists and is not a folder", output)
    check_threshold(recipe.near_duplicate_threshold)
    if recipe.role in ("extractor", "both") and not recipe.corpus:
        raise QAInputError("training the extractor needs --corpus (the passages its examples are cut from)")


def train_agent_models(recipe: TrainingRecipe, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Train the roles ``recipe`` names; returns {role: saved folder} (``output/core``,
    ``output/extractor``). ``log`` gets one line per role with its example counts."""
    from knowledge_qa.training.finetune import FinetuneOptions, finetune

    check_recipe(recipe)
    output = Path(recipe.output)
    output.mkdir(parents=True, exist_ok=True)
    questions, extra = training_questions(recipe, output, log)
    base, trained_modules = _base_model(recipe, output)
    folders: dict[str, Path] = {}
    for role, examples in _role_examples(recipe, questions, extra):
        if recipe.tasks:
            examples = [example for example in examples if example.task in recipe.tasks]
        if recipe.max_examples_per_task:
            examples = sample_per_task(examples, recipe.max_examples_per_task, recipe.seed)
        if not examples:
            raise QAInputError(f"no {role} training examples could be made from {recipe.questions}")
        log(f"{role}: {len(examples)} examples {json.dumps(example_counts(examples))}")
        options = FinetuneOptions(
            output_dir=str(output / role),
            epochs=recipe.epochs,
            learning_rate=recipe.learning_rate,
            batch_size=recipe.batch_size,
            adapter=recipe.adapter,
            trained_modules=list(trained_modules),
            max_source_tokens=recipe.max_source_tokens,
            seed=recipe.seed,
        )
        folders[role] = Path(finetune(base, examples, options))
        log(f"{role} → {folders[role]}")
    return folders


def _base_model(recipe: TrainingRecipe, output: Path) -> tuple[str, list[str]]:
    """(base model, parameters trained in full): ``recipe.base``, or the warm-started model, built
    once in ``output/base`` (a second run, say the extractor after the core, reuses it)."""
    if not recipe.warm_start:
        return str(recipe.base), list(recipe.trained_modules or [])
    from knowledge_qa.training.warm_start import WARM_START_FRESH_MODULES, build_warm_started_seq2seq

    encoder = None if recipe.warm_start == DEFAULT_WARM_START else recipe.warm_start
    folder = output / "base"
    if not (folder / "config.json").is_file():
        build_warm_started_seq2seq(encoder, folder, seed=recipe.seed)
    trained = recipe.trained_modules
    if trained is None:
        trained = list(WARM_START_FRESH_MODULES) if recipe.adapter is not None else []
    return str(folder), list(trained)


def training_questions(
    recipe: TrainingRecipe, output: Path, log: Callable[[str], None] = print
) -> tuple[list[StrategyQuestion], list[StrategyQuestion]]:
    """(questions, extra questions) of ``recipe`` without near-duplicates of its ``held_out``
    questions; extra questions also in ``questions`` are dropped (and extra questions without an
    answer: they supervise nothing). The removals are written to ``output/training_data.json``."""
    questions = read_questions(recipe.questions)
    extra: list[StrategyQuestion] = []
    if recipe.extra_questions:
        known = {q.question for q in questions}
        extra = [q for q in read_questions(recipe.extra_questions) if q.question not in known and q.answer is not None]
    held_out = [q for path in recipe.held_out for q in read_questions(path)]
    report: dict[str, Any] = {"held_out": recipe.held_out, "held_out_questions": len(held_out),
                              "threshold": recipe.near_duplicate_threshold, "sources": {}}
    kept_sources = []
    for name, source in ((recipe.questions, questions), (recipe.extra_questions, extra)):
        kept, dropped = drop_near_duplicates(
            source, [q.question for q in source], [q.question for q in held_out], recipe.near_duplicate_threshold
        )
        kept_sources.append(kept)
        if name:
            report["sources"][name] = {
                "questions": len(source),
                "removed": len(dropped),
                "pairs": [{"train": source[d.index].question, "held_out": held_out[d.held_out_index].question,
                           "similarity": round(d.similarity, 3)} for d in dropped],
            }
            if held_out:
                log(f"{name}: removed {len(dropped)} of {len(source)} questions (near-duplicates of held-out questions, "
                    f"Jaccard ≥ {recipe.near_duplicate_threshold})")
    if not kept_sources[0]:
        raise QAInputError("every training question is a near-duplicate of a held-out question", recipe.questions)
    with atomic_outputs([output / "training_data.json"]) as (handle,):
        json.dump(report, handle, indent=1, ensure_ascii=False)
    return kept_sources[0], kept_sources[1]


def _role_examples(
    recipe: TrainingRecipe, questions: Sequence[StrategyQuestion], extra: Sequence[StrategyQuestion]
) -> list[tuple[str, list[Any]]]:
    """(role, examples) of every role to train; repeated examples are kept once."""
    jobs = []
    if recipe.role in ("core", "both"):
        examples = list(dict.fromkeys(core_examples(questions) + core_examples(questions, with_decomposition=False)))
        examples += final_answer_examples(extra)
        jobs.append(("core", examples))
    if recipe.role in ("extractor", "both"):
        from knowledge_qa.corpus import read_corpus

        passages = {p.id: p for p in read_corpus(str(recipe.corpus))}
        examples = extractor_examples(questions, passages) + extractor_examples(questions, passages, with_decomposition=False)
        jobs.append(("extractor", list(dict.fromkeys(examples))))
    return jobs


def sample_per_task(examples: list, limits: dict[str, int], seed: int) -> list:
    """At most ``limits[task]`` (else ``limits["*"]``) examples of each task, drawn with ``seed``, in
    their original order."""
    by_task: dict[str, list[int]] = {}
    for index, example in enumerate(examples):
        by_task.setdefault(example.task, []).append(index)
    keep: set[int] = set()
    for task, indices in by_task.items():
        limit = limits.get(task, limits.get("*", len(indices)))
        keep.update(indices if len(indices) <= limit else random.Random(seed).sample(indices, limit))
    return [example for index, example in enumerate(examples) if index in keep]
