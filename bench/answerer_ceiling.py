"""How much can the CPU answerer get out of perfect knowledge? The ceiling of issue 13's goals.

The agent's answerer (`knowledge-qa train --role answerer`: all-MiniLM-L6-v2 fine-tuned as a yes/no
classifier) is trained here on the *gold* facts of StrategyQA train questions instead of silver
states, with the same classifier settings, and scored on dev with the knowledge controls of the
agent's table (`knowledge_qa.controls`):

* own gold facts (the oracle: the best any retriever and extractor could hand it);
* another question's gold facts (a seeded derangement: same form, wrong knowledge);
* no knowledge: the bare question;
* with ``--index`` (a dense index of the benchmark corpus), what a perfect decomposer would hand it:
  the *silver* state of each dev question (`knowledge_qa.training.answer_states.silver_states`: the
  real retriever and sentence extractor run over its gold sub-questions, top 3 passages; reason
  steps keep their aligned gold fact), and another question's silver state.

If "own − another" is not clearly positive even here, no retriever can make knowledge flow through
this answerer, and the issue's goals (full agent ≥ 62 %, full − shuffled ≥ +3 points) are out of its
reach; if it is, the agent loses the knowledge before the answerer.

    python scripts/build_strategyqa_corpus.py ../shared/data/strategyqa/derived/strategyqa_evidence_sentences.json \
        bench/out/qa/corpus.jsonl
    knowledge-qa index bench/out/qa/corpus.jsonl --kind dense --output bench/out/qa/index-dense
    python bench/answerer_ceiling.py --seeds 0 1 2 --threads 2 --index bench/out/qa/index-dense

Training questions: train.json less its near-duplicates of dev and test questions (word Jaccard ≥
0.5, the package's filter); the last step of a decomposition, when no fact is aligned to it (the
yes/no comparison itself, usually), is left out of the state, as in the agent's training. Nothing is
chosen on dev: the settings are the answerer's defaults (`ClassifierOptions`: 3 epochs, lr 5e-5,
batch 16, 256 tokens). Each seed trains one classifier; every row gives each seed's accuracy and
their mean, and the interval column is the first seed's Wilson interval (three seeds are too few for
an interval of the mean). Paired rows: the difference per seed with its 95 % interval and the exact
McNemar p (229 questions each).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "strategyqa"
OUT = REPO / "bench" / "out" / "answerer-ceiling"

OWN, OTHER, BARE = "own gold facts (oracle)", "another question's gold facts", "no knowledge: the bare question"
SILVER, SILVER_OTHER = "own silver state (gold sub-questions, real retrieval)", "another question's silver state"


def training_examples(threshold: float):
    from knowledge_qa.controls import gold_facts
    from knowledge_qa.near_duplicates import drop_near_duplicates
    from knowledge_qa.strategyqa import read_questions
    from knowledge_qa.training.examples import final_answer_example

    train = [q for q in read_questions(DATA / "train.json") if q.answer is not None]
    held_out = [q.question for path in ("dev.json", "strategyqa_test.json") for q in read_questions(DATA / path)]
    kept, dropped = drop_near_duplicates(train, [q.question for q in train], held_out, threshold)
    examples = [final_answer_example(q, gold_facts(q)) for q in kept]
    return examples, {"train_questions": len(train), "removed_near_duplicates": len(dropped)}


def silver_dev_states(dev, index: Path) -> list[list[tuple[str, str]]]:
    from knowledge_qa.extraction import sentence_extractor
    from knowledge_qa.retrieval import load_retriever
    from knowledge_qa.training.answer_states import silver_states

    retriever = load_retriever(index)
    return silver_states(dev, retriever, sentence_extractor(retriever), top_k=3)


def score(folder: Path, seed: int, dev, silver: list[list[tuple[str, str]]] | None) -> dict[str, list[bool]]:
    from knowledge_qa.controls import answer_from_states, derangement, gold_facts
    from knowledge_qa.models.classifier_model import ClassifierAnswerer

    answerer = ClassifierAnswerer.from_pretrained(folder)
    gold = [[gold_facts(q)] for q in dev]
    other = derangement(len(dev), seed)
    correct = {
        OWN: answer_from_states(answerer, dev, gold),
        OTHER: answer_from_states(answerer, dev, [gold[j] for j in other]),
        BARE: answer_from_states(answerer, dev, [[] for _ in dev]),
    }
    if silver is not None:
        correct[SILVER] = answer_from_states(answerer, dev, [[facts] for facts in silver])
        correct[SILVER_OTHER] = answer_from_states(answerer, dev, [[silver[j]] for j in other])
    return correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--threshold", type=float, default=0.5, help="near-duplicate word Jaccard")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--index", type=Path, help="a dense index of the benchmark corpus: adds the silver-state rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from knowledge_qa.significance import paired_comparison, wilson_interval
    from knowledge_qa.strategyqa import read_questions
    from knowledge_qa.training.answer_classifier import ClassifierOptions, train_answer_classifier
    from knowledge_qa.training.warm_start import default_encoder

    examples, counts = training_examples(args.threshold)
    yes = sum(e.target == "yes" for e in examples)
    print(f"training states: {len(examples)} ({yes} yes), {json.dumps(counts)}", flush=True)
    dev = read_questions(DATA / "dev.json")
    silver = silver_dev_states(dev, args.index) if args.index else None
    results: dict[str, dict] = {}
    for seed in args.seeds:
        folder = args.out / f"seed-{seed}"
        if not (folder / "config.json").exists():
            train_answer_classifier(examples, default_encoder(), folder, ClassifierOptions(epochs=args.epochs, seed=seed))
        summary = json.loads((folder / "training_summary.json").read_text())
        correct = score(folder, seed, dev, silver)
        results[str(seed)] = {"correct": correct, "train_loss": summary["train_loss"], "seconds": summary["seconds"]}
        print(f"seed {seed}: " + ", ".join(f"{name} {100 * sum(c) / len(c):.2f}" for name, c in correct.items())
              + f" (train loss {summary['train_loss']:.3f}, {summary['seconds']:.0f} s)", flush=True)

    n = len(next(iter(results.values()))["correct"][OWN])
    print(f"\n| dev (n = {n}) | " + " | ".join(f"seed {s}" for s in results) + " | mean | 95 % CI (seed "
          f"{args.seeds[0]}) |")
    print("|---|" + "---|" * (len(results) + 2))
    for name in next(iter(results.values()))["correct"]:
        accuracies = [100 * sum(r["correct"][name]) / n for r in results.values()]
        low, high = wilson_interval(sum(results[str(args.seeds[0])]["correct"][name]), n)
        print(f"| {name} | " + " | ".join(f"{a:.2f}" for a in accuracies)
              + f" | {statistics.mean(accuracies):.2f} | {100 * low:.1f}–{100 * high:.1f} |")
    print("\n| paired on dev | seed | difference (95 % CI) | McNemar p |\n|---|---|---|---|")
    pairs = [(OWN, OTHER), (OWN, BARE), (OTHER, BARE)] + ([(SILVER, SILVER_OTHER), (OWN, SILVER)] if silver else [])
    for a, b in pairs:
        for seed, r in results.items():
            c = paired_comparison(r["correct"][a], r["correct"][b])
            print(f"| {a} − {b} | {seed} | {100 * c.difference:+.2f} ({100 * c.low:+.1f}, {100 * c.high:+.1f}) "
                  f"| {c.p_value:.3f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"counts": counts, "examples": len(examples), "seeds": results}))
    print(f"results → {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
