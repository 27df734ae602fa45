"""StrategyQA evaluation: accuracy, per-action counts, steps, retrieval calls and latency, with one
JSONL trace per question.

Resumable: every finished question's trace line is written and flushed at once, so an interrupted
run loses at most the batch in flight; re-running with the same trace file skips the questions
already there (a torn last line, from a crash mid-write, is dropped and redone). The settings of a
run are stored beside the traces (``<traces>.settings.json``) and a rerun with other settings is
refused rather than mixing two experiments in one file.

A question whose model call fails (`BackendError`: an HTTP 4xx such as a prompt over the server's
context, or a server that kept failing) does not stop the run: its batch is retried question by
question, and a question that still fails gets a trace line with its ``error`` and no prediction. A
rerun retries exactly those questions (their later line replaces the error line). Only
``max_consecutive_errors`` failures in a row (a server that is down) stop the run, with the traces
so far kept. Accuracy counts answered questions; the summary reports ``errors`` beside it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from knowledge_qa.agent import GeekAgent
from knowledge_qa.errors import BackendError, QAInputError
from knowledge_qa.state import Action
from knowledge_qa.strategyqa import StrategyQuestion
from nagner.common.atomic import check_output_path


def settings_path(trace_path: Path) -> Path:
    return trace_path.with_name(trace_path.name + ".settings.json")


def read_finished(trace_path: Path) -> dict[str, dict[str, Any]]:
    """qid → trace of the questions already in ``trace_path``; a torn last line is cut off the file."""
    if not trace_path.exists():
        return {}
    finished: dict[str, dict[str, Any]] = {}
    keep = 0
    with trace_path.open("rb") as handle:
        for raw in handle:
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                if raw.endswith(b"\n"):
                    raise QAInputError("not a trace line (the file is not one of our trace files?)", trace_path, len(finished) + 1) from None
                break  # torn final line of an interrupted run
            if not raw.endswith(b"\n"):
                break
            finished[record["qid"]] = record
            keep += len(raw)
    if keep != trace_path.stat().st_size:
        with trace_path.open("r+b") as handle:
            handle.truncate(keep)
    return finished


def check_settings(trace_path: Path, settings: dict[str, Any], finished: int) -> None:
    """Store ``settings`` beside the traces, or refuse when existing traces were made with others."""
    path = settings_path(trace_path)
    if path.exists() and finished:
        stored = json.loads(path.read_text(encoding="utf-8"))
        differing = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
        if differing:
            raise QAInputError(
                f"{finished} questions were answered with other settings ({', '.join(differing)}); "
                "use another trace file or delete this one to start over",
                trace_path,
            )
    path.write_text(json.dumps(settings, indent=1, sort_keys=True), encoding="utf-8")


def evaluate(
    agent: GeekAgent,
    questions: Sequence[StrategyQuestion],
    trace_path: str | Path,
    *,
    settings: dict[str, Any] | None = None,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    max_consecutive_errors: int = 20,
) -> dict[str, Any]:
    """Answer every question not yet in ``trace_path``, append its trace, and return the summary
    over all questions of ``questions`` (finished earlier or now)."""
    trace_path = check_output_path(trace_path)
    finished = read_finished(trace_path)
    check_settings(trace_path, dict(settings or {}), len(finished))
    todo = [q for q in questions if q.qid not in finished or "error" in finished[q.qid]]
    failures_in_a_row = 0
    with trace_path.open("a", encoding="utf-8") as handle:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            for question, outcome in zip(batch, _answer_isolated(agent, batch)):
                gold = None if question.answer is None else ("yes" if question.answer else "no")
                record: dict[str, Any] = {"qid": question.qid, "gold": gold}
                if isinstance(outcome, str):
                    record.update({"question": question.question, "prediction": None, "error": outcome, "correct": None})
                    failures_in_a_row += 1
                else:
                    record.update(outcome.to_dict())
                    record["correct"] = None if question.answer is None else outcome.answer_bool == question.answer
                    failures_in_a_row = 0
                finished[question.qid] = record
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                if failures_in_a_row >= max_consecutive_errors:
                    handle.flush()
                    raise BackendError(f"{failures_in_a_row} questions failed in a row (last: {outcome}); "
                                       f"the traces so far are in {trace_path}, a rerun retries the failed ones")
            handle.flush()
            os.fsync(handle.fileno())
            if progress is not None:
                progress(len(questions) - len(todo) + start + len(batch), len(questions))
    return summarise([finished[q.qid] for q in questions], questions)


def _answer_isolated(agent: GeekAgent, batch: Sequence[StrategyQuestion]) -> list[Any]:
    """The agent's result per question, or the error message of a question whose model calls
    failed: the batch at once, and question by question only when the batch failed."""
    try:
        return list(agent.answer_batch([q.question for q in batch]))
    except BackendError as error:
        if len(batch) == 1:
            return [str(error)]
    return [_answer_isolated(agent, [question])[0] for question in batch]


def summarise(records: Sequence[dict[str, Any]], questions: Sequence[StrategyQuestion]) -> dict[str, Any]:
    """Accuracy (over answered questions with a gold answer), the questions that failed with an
    error, the majority-class baseline of these questions, mean actions per question, steps,
    retrieval calls, fallbacks and seconds per question (over answered questions)."""
    errors = sum("error" in r for r in records)
    records = [r for r in records if "error" not in r]
    labelled = [r for r in records if r.get("correct") is not None]
    golds = [q.answer for q in questions if q.answer is not None]
    majority = max(sum(golds), len(golds) - sum(golds)) / len(golds) if golds else None
    count = max(1, len(records))
    actions: Counter[str] = Counter()
    for record in records:
        actions.update(record["action_counts"])
    return {
        "questions": len(records) + errors,
        "errors": errors,
        "labelled": len(labelled),
        "accuracy": sum(r["correct"] for r in labelled) / len(labelled) if labelled else None,
        "majority_baseline": majority,
        "predicted_yes": sum(r["prediction"] == "yes" for r in records) / count,
        "actions_per_question": {a.value: actions.get(a.value, 0) / count for a in Action},
        "steps_per_question": sum(r["steps"] for r in records) / count,
        "retrieval_calls_per_question": sum(r["retrieval_calls"] for r in records) / count,
        "branches_per_question": sum(len(r["branches"]) for r in records) / count,
        "fallbacks": sum(r["fallbacks"] for r in records),
        "seconds_per_question": sum(r["seconds"] for r in records) / count,
    }
