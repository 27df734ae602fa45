"""GEEK on StrategyQA dev (229 questions) in one run: majority baseline, the agent and its ablations,
retrieval recall@k of the gold evidence (BM25 vs dense), seconds per question.

    python bench/knowledge_qa_strategyqa.py                       # CPU: small GEEK trained here end to end
    python bench/knowledge_qa_strategyqa.py --core google/flan-t5-xl --extractor google/flan-t5-large
    python bench/knowledge_qa_strategyqa.py --server http://127.0.0.1:8000 --server-model flan-t5-xxl

Knowledge source: the passages of ../shared/data/strategyqa/derived/strategyqa_evidence_sentences.json
(gold-evidence sentences of train questions plus retrieved sentences for dev/test; see its SOURCE.md):
NOT the full Wikipedia corpus GEEK used, and only 429 of the 998 dev evidence paragraphs are in it.

Without --core/--server the core model is trained here: an encoder-decoder warm-started from
all-MiniLM-L6-v2 (both halves; the cross-attention and LM head are new), with a LoRA adapter on every
linear layer plus the new modules in full, one epoch on the actions of StrategyQA train (2,061
questions; action and AddDecomp examples subsampled to 4,000 / 3,000 for the CPU budget) and the
answers of the 2,821 extra training questions (strategyqa_train_filtered.json; none is a dev
question, checked). The extractor is then the sentence extractor (the passage sentence closest to the
sub-question): a generative extractor trained for the same budget wrote noise (loss still ~7.8 after
a third of an epoch). FinalAnswer goes to a separate answerer, the same warm start trained on the
final-answer examples alone for 2 epochs (--no-answerer: the core model answers; that was the first
run, see bench/RESULTS.md). Every step is cached in bench/out/qa/ (corpus, indexes, models, traces):
a rerun resumes.
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

VARIANTS = {  # name → (decomposition, retrieval, exploration)
    "GEEK (full)": (True, True, True),
    "no exploration": (True, True, False),
    "no retrieval": (True, False, True),
    "no decomposition": (False, True, True),
    "no decomposition + no retrieval": (False, False, False),
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


def train_answerer(epochs: float, batch_size: int) -> Path:
    """A second warm-started model trained on FinalAnswer examples alone (the CPU recipe: the core
    model trained on every action answers yes / no barely above noise)."""
    from knowledge_qa.training.recipe import train_agent_models

    folder = OUT / "answerer"
    if not (folder / "core" / "adapter_config.json").exists():
        train_agent_models(cpu_recipe(folder, epochs, batch_size, tasks=["final_answer"]))
    return folder / "core"


def evaluate_variants(args: argparse.Namespace, index: Path, core: str, extractor: str | None) -> dict[str, dict]:
    """Every variant of ``args.variants`` on dev, in this process (models loaded once); resumable."""
    from knowledge_qa.agent import AgentOptions
    from knowledge_qa.assembly import AgentSpec, assemble, load_parts
    from knowledge_qa.evaluation import evaluate
    from knowledge_qa.strategyqa import read_questions

    questions = read_questions(DATA / "dev.json")[: args.limit]
    spec = AgentSpec(
        core=None if args.server else core, extractor=None if args.server else extractor, answerer=args.answerer,
        sentence_extractor=args.sentence_extractor, server=args.server, server_model=args.server_model,
        server_extractor_model=args.server_extractor_model, model_batch_size=args.model_batch_size, index=str(index),
    )
    parts = load_parts(spec)  # models and index loaded once for every variant
    core_model, extractor_model, answerer = parts.core, parts.extractor, parts.answerer
    results = {}
    for name in args.variants.split(","):
        decomposition, retrieval, exploration = VARIANTS[name]
        options = AgentOptions(decomposition=decomposition, retrieval=retrieval, exploration=exploration, branches=args.branches)
        agent = assemble(parts, options)
        slug = re.sub(r"[^a-z]+", "-", name).strip("-") + ("-answerer" if answerer else "")
        settings = {"core": core_model.describe(), "extractor": extractor_model.describe(), "index": str(index),
                    "answerer": answerer.describe() if answerer else None, "questions": len(questions), **vars(options)}
        summary = evaluate(agent, questions, OUT / f"traces-{slug}.jsonl", settings=settings, batch_size=args.batch_size)
        results[name] = summary
        print(name, json.dumps(summary), flush=True)
    return results


def markdown(results: dict, recall: dict, majority: tuple[str, float]) -> str:
    """The accuracy table (majority class of train, then every variant) and the recall table."""
    lines = [
        "| system | accuracy | AddDecomp | RetrieveExtract | SelfAnswer | steps / q | branches / q | fallbacks | s / question |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| always \"{majority[0]}\" (majority class of train) | {100 * majority[1]:.2f} | – | – | – | – | – | – | – |",
    ]
    for name, s in results.items():
        a = s["actions_per_question"]
        lines.append(
            f"| {name} | **{100 * s['accuracy']:.2f}** | {a['AddDecomp']:.2f} | {a['RetrieveExtract']:.2f} | {a['SelfAnswer']:.2f} "
            f"| {s['steps_per_question']:.2f} | {s['branches_per_question']:.2f} | {s['fallbacks']} | {s['seconds_per_question']:.2f} |"
        )
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--core", help="a trained core model (skip training)")
    parser.add_argument("--extractor", help="an extractor model (default: the core model; on the CPU run: --sentence-extractor)")
    parser.add_argument("--sentence-extractor", action="store_true", help="extract the passage sentence closest to the sub-question")
    parser.add_argument("--answerer", help="a separate FinalAnswer model (the CPU run trains one; --no-answerer: the core answers)")
    parser.add_argument("--no-answerer", action="store_true")
    parser.add_argument("--answerer-epochs", type=float, default=2.0)
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
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus()
    kinds = [k for k in args.recall_kinds.split(",") if k]
    indexes = {kind: build_index(corpus, kind) for kind in dict.fromkeys([*kinds, args.index_kind])}
    recall = recall_table({k: indexes[k] for k in kinds}) if kinds else {}
    core, extractor = args.core, args.extractor
    if not core and not args.server:
        core = str(train_models(corpus, args.epochs, args.train_batch_size) / "core")
        args.sentence_extractor = extractor is None
        if not args.no_answerer and not args.answerer:
            args.answerer = str(train_answerer(args.answerer_epochs, args.train_batch_size))
    results = evaluate_variants(args, indexes[args.index_kind], core, extractor)
    from knowledge_qa.strategyqa import majority_answer, read_questions

    train_majority = majority_answer(read_questions(DATA / "train.json"))
    dev = read_questions(DATA / "dev.json")[: args.limit]
    majority = ("yes" if train_majority else "no", sum(q.answer == train_majority for q in dev) / len(dev))
    table = markdown(results, recall, majority)
    (OUT / "qa-strategyqa.json").write_text(json.dumps({"results": results, "recall": recall}, indent=1), encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
