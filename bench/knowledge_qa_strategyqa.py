"""GEEK on StrategyQA dev (229 questions) in one run: majority baseline, the agent and its ablations,
retrieval recall@k of the gold evidence (BM25 vs dense), seconds per question.

    python bench/knowledge_qa_strategyqa.py                       # CPU: small GEEK trained here end to end
    python bench/knowledge_qa_strategyqa.py --core google/flan-t5-xl --extractor google/flan-t5-large
    python bench/knowledge_qa_strategyqa.py --server http://127.0.0.1:8000 --server-model flan-t5-xxl

Knowledge source: the passages of ../shared/data/strategyqa/derived/strategyqa_evidence_sentences.json
(gold-evidence sentences of train questions plus retrieved sentences for dev/test; see its SOURCE.md):
NOT the full Wikipedia corpus GEEK used, and only 429 of the 998 dev evidence paragraphs are in it.

Without --core/--server the models are trained here, after removing from every training source the
questions that are near-duplicates of dev or test questions (word Jaccard >= 0.5; the removals are in
bench/out/qa/model/training_data.json):
- core: an encoder-decoder warm-started from all-MiniLM-L6-v2 (both halves; the cross-attention and
  LM head are new), with a LoRA adapter on every linear layer plus the new modules in full, one epoch
  on the actions of StrategyQA train (action and AddDecomp examples subsampled to 4,000 / 3,000 for
  the CPU budget) and the answers of the extra training questions (strategyqa_train_filtered.json);
  no training state holds a gold yes/no;
- extractor: the sentence extractor (the passage sentence closest to the sub-question); a generative
  extractor trained for the same budget wrote noise;
- answerer (FinalAnswer): all-MiniLM-L6-v2 fine-tuned as a yes/no classifier on silver states, the
  states the dense retriever and the sentence extractor build over the training questions' gold
  decompositions, with each question's own evidence kept at the dev coverage (43 %)
  (`knowledge-qa train --role answerer`); --no-answerer: the core model answers.

Controls in the same run, scored by the answerer: gold dev facts (an upper bound), another question's
gold facts, the full agent's facts of another question (a seeded derangement), and the bare question.
Every row has a 95 % Wilson interval and an exact McNemar test against the full agent. Every step is
cached in bench/out/qa/ (corpus, indexes, models, traces): a rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from knowledge_qa.training.recipe import TrainingRecipe

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "strategyqa"
OUT = REPO / "bench" / "out" / "qa"

FULL = "GEEK (full)"
VARIANTS = {  # name → (decomposition, retrieval, exploration, separate answerer)
    FULL: (True, True, True, True),
    "GEEK (full) with the core model answering (the paper's path)": (True, True, True, False),
    "no exploration": (True, True, False, True),
    "no retrieval": (True, False, True, True),
    "no decomposition": (False, True, True, True),
    "no decomposition + no retrieval": (False, False, False, True),
}


def run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def build_corpus() -> Path:
    corpus = OUT / "corpus.jsonl"
    if not corpus.exists():
        run([sys.executable, "scripts/build_strategyqa_corpus.py", str(DATA / "derived" / "strategyqa_evidence_sentences.json"), str(corpus)])
    return corpus


def build_index(corpus: Path, kind: str) -> Path:
    """The index ``knowledge-qa index CORPUS --kind KIND`` builds (the same library call)."""
    from knowledge_qa.corpus import read_corpus
    from knowledge_qa.retrieval import build_retriever

    folder = OUT / f"index-{kind}"
    if not (folder / "retriever.json").exists():
        print(f"indexing {corpus} ({kind})", flush=True)
        build_retriever(read_corpus(corpus), kind).save(folder)
    return folder


def recall_table(indexes: dict[str, Path], ks=(1, 5, 10, 20)) -> dict[str, dict]:
    """recall@k of the gold evidence paragraphs on dev, for the question as the query and for each gold
    sub-question (decomposition step with paragraph evidence) as the query. Only gold ids present in
    the corpus count (a question or step without any is left out)."""
    from knowledge_qa.corpus import read_corpus
    from knowledge_qa.retrieval import load_retriever, recall_at_k
    from knowledge_qa.strategyqa import evidence_ids, read_questions, step_evidence_ids, step_kinds

    questions = read_questions(DATA / "dev.json")
    known = {p.id for p in read_corpus(OUT / "corpus.jsonl")}
    question_queries, question_gold, step_queries, step_gold = [], [], [], []
    for q in questions:
        gold = evidence_ids(q) & known
        if gold:
            question_queries.append(q.question)
            question_gold.append(gold)
        for step, ids, kind in zip(q.decomposition, step_evidence_ids(q), step_kinds(q)):
            if kind == "retrieve" and ids & known and "#" not in step:
                step_queries.append(step)
                step_gold.append(ids & known)
    table = {}
    for name, folder in indexes.items():
        retriever = load_retriever(folder)
        began = time.perf_counter()
        by_question = recall_at_k(retriever, question_queries, question_gold, ks=ks)
        by_step = recall_at_k(retriever, step_queries, step_gold, ks=ks)
        seconds = (time.perf_counter() - began) / (len(question_queries) + len(step_queries))
        table[name] = {"question": by_question, "step": by_step, "seconds_per_query": seconds,
                       "questions": len(question_queries), "steps": len(step_queries)}
        print(name, json.dumps(table[name]), flush=True)
    return table


def cpu_recipe(output: Path, epochs: float, batch_size: int, **changes) -> TrainingRecipe:
    """The CPU recipe: the warm-started core with LoRA r = 16 on every linear layer, trained on the
    actions of StrategyQA train and the answers of the extra training questions."""
    from knowledge_qa.training.recipe import DEFAULT_WARM_START, TrainingRecipe

    values = dict(
        questions=str(DATA / "train.json"), extra_questions=str(DATA / "strategyqa_train_filtered.json"),
        output=str(output), warm_start=DEFAULT_WARM_START, role="core",
        adapter={"method": "lora", "r": 16, "lora_alpha": 32, "target_modules": "all-linear"},
        epochs=epochs, batch_size=batch_size, learning_rate=7e-4, max_source_tokens=256,
        held_out=[str(DATA / "dev.json"), str(DATA / "strategyqa_test.json")],
    )
    return TrainingRecipe(**{**values, **changes})


def train_models(corpus: Path, epochs: float, batch_size: int) -> Path:
    """The core model, trained here (the CPU recipe; about an hour on 2 cores)."""
    from knowledge_qa.training.recipe import train_agent_models

    folder = OUT / "model"
    if not (folder / "core" / "adapter_config.json").exists():
        limits = {"action": 4000, "decompose": 3000}
        train_agent_models(cpu_recipe(folder, epochs, batch_size, max_examples_per_task=limits))
    return folder


def dev_coverage(corpus: Path) -> float:
    """The share of the dev questions' evidence paragraphs that the corpus holds."""
    from knowledge_qa.corpus import read_corpus
    from knowledge_qa.strategyqa import evidence_ids, read_questions

    known = {p.id for p in read_corpus(corpus)}
    gold = set().union(*(evidence_ids(q) for q in read_questions(DATA / "dev.json")))
    return len(gold & known) / len(gold)


def train_answerer(index: Path, coverage: float, epochs: float, batch_size: int) -> Path:
    """The answerer: all-MiniLM-L6-v2 fine-tuned as a yes/no classifier on silver FinalAnswer states
    (`knowledge-qa train --role answerer`: the dense retriever and the sentence extractor run over the
    gold decompositions of the training questions, own evidence kept with the dev coverage; the
    question as its own query for the extra questions and the no-decomposition form), after the same
    near-duplicate filter as the core."""
    from knowledge_qa.training.answerer_recipe import AnswererRecipe
    from knowledge_qa.training.answerer_recipe import train_answerer as train

    folder = OUT / "answerer"
    if (folder / "answerer" / "config.json").exists():
        return folder / "answerer"
    recipe = AnswererRecipe(
        questions=str(DATA / "train.json"), extra_questions=str(DATA / "strategyqa_train_filtered.json"),
        output=str(folder), index=str(index), held_out=[str(DATA / "dev.json"), str(DATA / "strategyqa_test.json")],
        coverage=coverage, epochs=epochs, batch_size=batch_size, max_tokens=256,
    )
    return train(recipe)


def evaluate_variants(args: argparse.Namespace, index: Path, core: str, extractor: str | None):
    """Every variant of ``args.variants`` on dev, in this process (models loaded once); resumable.
    Returns (summaries, per-question records, the loaded parts)."""
    import dataclasses

    from knowledge_qa.agent import AgentOptions
    from knowledge_qa.assembly import AgentSpec, assemble, load_parts
    from knowledge_qa.evaluation import evaluate, read_finished
    from knowledge_qa.strategyqa import read_questions

    questions = read_questions(DATA / "dev.json")[: args.limit]
    spec = AgentSpec(
        core=None if args.server else core, extractor=None if args.server else extractor, answerer=args.answerer,
        sentence_extractor=args.sentence_extractor, server=args.server, server_model=args.server_model,
        server_extractor_model=args.server_extractor_model, model_batch_size=args.model_batch_size, index=str(index),
    )
    parts = load_parts(spec)  # models and index loaded once for every variant
    results, records = {}, {}
    for name in args.variants.split(","):
        decomposition, retrieval, exploration, use_answerer = VARIANTS[name]
        if not use_answerer and parts.answerer is None:
            continue  # the same agent as the full one
        options = AgentOptions(decomposition=decomposition, retrieval=retrieval, exploration=exploration, branches=args.branches)
        variant_parts = parts if use_answerer else dataclasses.replace(parts, answerer=None)
        agent = assemble(variant_parts, options)
        answerer = variant_parts.answerer
        slug = re.sub(r"[^a-z]+", "-", name.lower()).strip("-")[:48]
        slug += "-answerer" if answerer else ""
        settings = {"core": parts.core.describe(), "extractor": parts.extractor.describe(), "index": str(index),
                    "answerer": answerer.describe() if answerer else None, "questions": len(questions), **vars(options)}
        trace = OUT / f"traces-{slug}.jsonl"
        summary = evaluate(agent, questions, trace, settings=settings, batch_size=args.batch_size)
        results[name] = summary
        finished = read_finished(trace)
        records[name] = [finished[q.qid] for q in questions]
        print(name, json.dumps(summary), flush=True)
    return results, records, parts


def controls(parts, records: dict[str, list[dict]], questions) -> dict[str, list[bool]]:
    """Per-question correctness of the knowledge controls (`knowledge_qa.controls`), scored by the
    agent's answerer on the full agent's traces."""
    from knowledge_qa.controls import knowledge_controls

    return knowledge_controls(parts.answerer or parts.core, questions, records[FULL])


def agent_recall(records: list[dict], questions, corpus: Path) -> dict[str, float]:
    """Recall of the agent's own retrieval: of the dev questions with gold evidence in the corpus, the
    share whose RetrieveExtract calls (any branch) brought back at least one gold paragraph; and the
    share of the calls that did."""
    from knowledge_qa.corpus import read_corpus
    from knowledge_qa.strategyqa import evidence_ids

    known = {p.id for p in read_corpus(corpus)}
    hit_questions = with_gold = calls = hit_calls = 0
    for record, question in zip(records, questions):
        gold = evidence_ids(question) & known
        if not gold:
            continue
        with_gold += 1
        found = False
        for branch in record["branches"]:
            for step in branch["steps"]:
                if step["action"] == "RetrieveExtract":
                    calls += 1
                    hit = any(p["id"] in gold for p in step.get("passages", []))
                    hit_calls += hit
                    found = found or hit
        hit_questions += found
    return {"questions": with_gold, "question_recall": hit_questions / max(1, with_gold),
            "calls": calls, "call_recall": hit_calls / max(1, calls)}


def markdown(results: dict, correct: dict[str, list[bool]], recall: dict, majority: tuple[str, float, list[bool]]) -> str:
    """The accuracy table with 95 % intervals and paired tests against the full agent, then recall."""
    from knowledge_qa.significance import paired_comparison, wilson_interval

    full = correct[FULL]
    lines = [
        "| system | accuracy | 95 % CI | full − system (95 % CI) | McNemar p | yes rate | AddDecomp | RetrieveExtract | SelfAnswer | branches / q | s / question |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def stats_cells(name: str, flags: list[bool]) -> str:
        low, high = wilson_interval(sum(flags), len(flags))
        cells = f"**{100 * sum(flags) / len(flags):.2f}** | {100 * low:.1f}–{100 * high:.1f}"
        if name == FULL:
            return cells + " | – | – "
        c = paired_comparison(full, flags)
        return cells + f" | {100 * c.difference:+.2f} ({100 * c.low:+.1f}, {100 * c.high:+.1f}) | {c.p_value:.3f} "

    lines.append(f"| always \"{majority[0]}\" (majority class of train) | {stats_cells('majority', majority[2])}| – | – | – | – | – | – |")
    for name, s in results.items():
        a = s["actions_per_question"]
        lines.append(
            f"| {name} | {stats_cells(name, correct[name])}| {100 * s['predicted_yes']:.0f} % | {a['AddDecomp']:.2f} | {a['RetrieveExtract']:.2f} "
            f"| {a['SelfAnswer']:.2f} | {s['branches_per_question']:.2f} | {s['seconds_per_question']:.2f} |"
        )
    for name, flags in correct.items():
        if name not in results:
            lines.append(f"| control: {name} | {stats_cells(name, flags)}| – | – | – | – | – | – |")
    if recall:
        ks = list(next(iter(recall.values()))["question"])
        lines += ["", "| retriever | query (count) | " + " | ".join(f"recall@{k}" for k in ks) + " | ms / query |",
                  "|---|---|" + "---|" * len(ks) + "---|"]
        for name, r in recall.items():
            for query in ("question", "step"):
                values = " | ".join(f"{100 * r[query][k]:.1f}" for k in ks)
                lines.append(f"| {name} | {query} ({r[query + 's']}) | {values} | {1000 * r['seconds_per_query']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    global OUT
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--core", help="a trained core model (skip training)")
    parser.add_argument("--extractor", help="an extractor model (default: the core model; on the CPU run: --sentence-extractor)")
    parser.add_argument("--sentence-extractor", action="store_true", help="extract the passage sentence closest to the sub-question")
    parser.add_argument("--answerer", help="a separate FinalAnswer model (the CPU run trains one; --no-answerer: the core answers)")
    parser.add_argument("--no-answerer", action="store_true")
    parser.add_argument("--answerer-epochs", type=float, default=3.0)
    parser.add_argument("--server", help="an OpenAI-compatible server instead of local models")
    parser.add_argument("--server-model")
    parser.add_argument("--server-extractor-model")
    parser.add_argument("--index-kind", default="dense", help="the agent's retriever (default dense: the better recall below)")
    parser.add_argument("--recall-kinds", default="bm25,two_level-bm25,dense", help="retrievers compared by recall@k ('' to skip)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--branches", type=int, default=3)
    parser.add_argument("--limit", type=int, help="only the first N dev questions (smoke runs)")
    parser.add_argument("--epochs", type=float, default=1.0, help="core model epochs (default 1, the recorded run)")
    parser.add_argument("--train-batch-size", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16, help="questions answered together")
    parser.add_argument("--model-batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="cache and trace folder (default bench/out/qa)")
    args = parser.parse_args()
    OUT = args.out or OUT

    import torch

    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus()
    kinds = [k for k in args.recall_kinds.split(",") if k]
    indexes = {kind: build_index(corpus, kind) for kind in dict.fromkeys([*kinds, args.index_kind])}
    recall = recall_table({k: indexes[k] for k in kinds}) if kinds else {}
    coverage = dev_coverage(corpus)
    print(f"dev evidence paragraphs in the corpus: {100 * coverage:.1f} %", flush=True)
    core, extractor = args.core, args.extractor
    if not core and not args.server:
        core = str(train_models(corpus, args.epochs, args.train_batch_size) / "core")
        args.sentence_extractor = extractor is None
        if not args.no_answerer and not args.answerer:
            args.answerer = str(train_answerer(indexes[args.index_kind], coverage, args.answerer_epochs, args.train_batch_size))
    results, records, parts = evaluate_variants(args, indexes[args.index_kind], core, extractor)
    from knowledge_qa.strategyqa import majority_answer, read_questions

    dev = read_questions(DATA / "dev.json")[: args.limit]
    train_majority = majority_answer(read_questions(DATA / "train.json"))
    majority = ("yes" if train_majority else "no", sum(q.answer == train_majority for q in dev) / len(dev),
                [q.answer == train_majority for q in dev])
    # a question the backend failed on (correct None, the error in its trace) counts as wrong, and
    # how many there were is printed under the table: the paired tests need every question
    correct = {name: [bool(r["correct"]) for r in rows] for name, rows in records.items()}
    failed = {name: sum(r["correct"] is None for r in rows) for name, rows in records.items()}
    if FULL in records:
        correct.update(controls(parts, records, dev))
    own_recall = agent_recall(records[FULL], dev, corpus) if FULL in records and retrieval_on(FULL) else {}
    table = markdown(results, correct, recall, majority)
    if any(failed.values()):
        table += "\n\nFailed questions (backend errors, counted as wrong; rerun to retry them): " + ", ".join(
            f"{name}: {count}" for name, count in failed.items() if count)
    (OUT / "qa-strategyqa.json").write_text(json.dumps(
        {"results": results, "correct": correct, "failed": failed, "recall": recall, "agent_recall": own_recall,
         "coverage": coverage}, indent=1), encoding="utf-8")
    print(table)
    if own_recall:
        print(f"agent's own retrieval: {100 * own_recall['question_recall']:.1f} % of {own_recall['questions']} questions "
              f"got >= 1 gold paragraph; {100 * own_recall['call_recall']:.1f} % of {own_recall['calls']} calls")


def retrieval_on(name: str) -> bool:
    return VARIANTS[name][1]


if __name__ == "__main__":
    main()
