"""LECO on all-MiniLM-L6-v2 (6 layers) for two sentence tasks from our data. Multi-exit models with
linear exits, mean-pool exits and searched exits (first-order DARTS, then retrained), the same
training budget each; per-exit accuracy on the test split; accuracy against speed-up (6 / mean exit
layer) for four exit rules on the same weights; then, for each rule's operating points, the speed-up
three ways: layers, FLOPs (exit heads included) and wall-clock at batch 1 with 1 and 2 threads.

    python bench/leco.py --task conll-org --train 4000 --held-out 500 --epochs 1 --search-steps 125
    python bench/leco.py --task strategyqa --held-out 200 --epochs 3 --search-steps 120

Systems: one exit type at every layer for each of ``--single-types`` and for the type the search
chose most often, and the searched exits; each trained with the same budget from the same seed.

Tasks:
* ``conll-org``: "does the sentence mention an organisation?" Training: the first ``--train``
  sentences of CoNLL-2003 eng.train; the search's held-out batches: the next ``--held-out``;
  dev (operating points): the first ``--dev`` sentences of eng.testa; test: eng.testb (3,453).
* ``strategyqa``: the yes/no answer of a StrategyQA question from the question and its gold facts
  ("question [SEP] facts", up to 128 sub-tokens). Training: train.json less its last ``--held-out``
  questions (the search's held-out batches, which are also the dev split for operating points:
  StrategyQA has no other labelled split); test: dev.json (229 questions; one standard error is
  about 3 points at that size).
Operating points, chosen on dev: for each rule, the setting most accurate on dev among those whose
layer speed-up on dev is at least 1.5× (and 2×); the table gives that setting's test accuracy and
test speed-up. The area under the test curve (every setting's test accuracy against its test
speed-up, the best at each speed) is an envelope, not a choice: it is labelled so. FLOPs: FlopCounterMode over the first ``--speed-examples`` test inputs, early exit
(`MultiExitClassifier.predict_early`, every exit head it passes included) against the same
weights run to the last layer and its exit; wall-clock: the same two, interleaved input by input.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch
from exit_costs import interleaved_latency, total_flops
from transformers import AutoModel, AutoTokenizer

from nagner.common.encoders import resolve_encoder
from nagner.compression.leco import (
    ComparisonRule,
    EntropyRule,
    MaxProbabilityRule,
    MultiExitClassifier,
    PatienceRule,
    decide,
    search_exits,
)
from nagner.compression.leco.training import exit_probabilities as recorded_exits
from nagner.compression.leco.training import make_batches, train_multi_exit
from nagner.data import read_sentences

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "conll2003"
TEACHER = "sentence-transformers/all-MiniLM-L6-v2"
RULES = {
    "COBEE (comparison)": [ComparisonRule(t) for t in range(1, 7)],
    "PABEE (patience)": [PatienceRule(p) for p in range(1, 6)],
    "entropy": [EntropyRule(t) for t in (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)],
    "max probability": [MaxProbabilityRule(t) for t in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)],
}


def conll_examples(sentences, tokenizer) -> list[dict[str, torch.Tensor]]:
    rows = []
    for sentence in sentences:
        encoded = tokenizer(" ".join(sentence.words), truncation=True, max_length=64, return_tensors="pt")
        label = int(any(entity.type == "ORG" for entity in sentence.entities))
        rows.append({"input_ids": encoded["input_ids"][0], "label": label})
    return rows


def strategyqa_examples(records, tokenizer) -> list[dict[str, torch.Tensor]]:
    rows = []
    for record in records:
        encoded = tokenizer(record["question"], " ".join(record["facts"]), truncation=True, max_length=128, return_tensors="pt")
        rows.append({"input_ids": encoded["input_ids"][0], "label": int(bool(record["answer"]))})
    return rows


def task_rows(task: str, tokenizer, train: int, held_out: int, dev: int):
    """(training, held-out, dev, test) examples of ``task``."""
    if task == "conll-org":
        sentences = read_sentences(str(DATA / "eng.train"))
        return (conll_examples(sentences[:train], tokenizer), conll_examples(sentences[train : train + held_out], tokenizer),
                conll_examples(read_sentences(str(DATA / "eng.testa"))[:dev], tokenizer),
                conll_examples(read_sentences(str(DATA / "eng.testb")), tokenizer))
    folder = DATA.parent / "strategyqa"
    records = json.loads((folder / "train.json").read_text(encoding="utf-8"))
    test = json.loads((folder / "dev.json").read_text(encoding="utf-8"))
    held = strategyqa_examples(records[-held_out:], tokenizer)
    return strategyqa_examples(records[:-held_out], tokenizer), held, held, strategyqa_examples(test, tokenizer)


def exit_probabilities(model: MultiExitClassifier, test_batches) -> tuple[torch.Tensor, torch.Tensor]:
    return recorded_exits(model, test_batches), torch.cat([b["labels"] for b in test_batches])


def curve(probabilities: torch.Tensor, labels: torch.Tensor, rules) -> list[tuple[float, float, str]]:
    """(layer speed-up, accuracy, setting) of every setting."""
    points = []
    for index, rule in enumerate(rules):
        layers, answers = decide(rule, probabilities)
        points.append((probabilities.shape[1] / layers.float().mean().item(), (answers == labels).float().mean().item(), index))
    return sorted(points)


def operating_point(points, speed_up: float):
    """The most accurate setting at least ``speed_up`` fast (None if none is); of equally accurate
    ones, the fastest."""
    fast = [(accuracy, s, index) for s, accuracy, index in points if s >= speed_up]
    return max(fast)[2] if fast else None


def at_setting(points, index: int | None) -> tuple[float, float] | None:
    """(speed-up, accuracy) of setting ``index`` on a curve."""
    return None if index is None else next((s, a) for s, a, i in points if i == index)


def speed_rows(model: MultiExitClassifier, rows, chosen: dict[str, object], threads: tuple[int, ...]) -> dict:
    """FLOPs and wall-clock (batch 1) of early exit under each chosen rule vs the last exit."""
    inputs = [(r["input_ids"][None], torch.ones(1, len(r["input_ids"]), dtype=torch.long)) for r in rows]

    @torch.no_grad()
    def full(item):
        ids, mask = item
        return model.exits[-1](model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask).argmax(-1)

    systems = {"last exit (no early exit)": full}
    for name, rule in chosen.items():
        systems[name] = lambda item, rule=rule: model.predict_early(item[0], item[1], rule)
    base = total_flops(full, inputs)
    report = {name: {"flops_speed_up": base / total_flops(run, inputs)} for name, run in systems.items()}
    for count in threads:
        for name, timing in interleaved_latency(systems, inputs, count).items():
            report[name][f"wall_{count}t"] = timing
    return report


def accuracy_at(points: list[tuple[float, float]], speed_up: float) -> float | None:
    """The best accuracy among the settings at least ``speed_up`` fast (None if none is)."""
    fast = [accuracy for s, accuracy, _ in points if s >= speed_up]
    return max(fast) if fast else None


def area(points: list[tuple[float, float]]) -> float:
    """Area under accuracy vs speed-up between 1× and 3× (flat extension, trapezoids), divided by 2."""
    grid = [1 + 0.1 * i for i in range(21)]
    values = [accuracy_at(points, s) or 0.0 for s in grid]
    return sum((a + b) / 2 * 0.1 for a, b in zip(values, values[1:])) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("conll-org", "strategyqa"), default="conll-org")
    parser.add_argument("--train", type=int, default=4000, help="conll-org: training sentences")
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--dev", type=int, default=1000, help="conll-org: eng.testa sentences that choose the operating points")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--search-steps", type=int, default=125)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--speed-examples", type=int, default=300)
    parser.add_argument("--single-types", default="cls_linear,mean_linear",
                        help="exit types trained as one type at every layer (the search's most frequent type is added)")
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "leco"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = resolve_encoder(TEACHER)
    tokenizer = AutoTokenizer.from_pretrained(path)
    train_rows, held_rows, dev_rows, test_rows = task_rows(args.task, tokenizer, args.train, args.held_out, args.dev)
    train_batches, held_batches = make_batches(train_rows, 32, seed=0), make_batches(held_rows, 32, seed=1)
    dev_batches, test_batches = make_batches(dev_rows, 64), make_batches(test_rows, 64)
    majority = max(sum(r["label"] for r in test_rows), len(test_rows) - sum(r["label"] for r in test_rows)) / len(test_rows)
    systems = {}
    torch.manual_seed(0)
    searched = MultiExitClassifier(AutoModel.from_pretrained(path), classes=2)
    result = search_exits(searched, train_batches, held_batches, steps=args.search_steps, learning_rate=args.lr)
    single = list(dict.fromkeys([*filter(None, args.single_types.split(",")), Counter(result.exits).most_common(1)[0][0]]))
    for kind in single:  # the same exit type after every layer; the search's most frequent type always among them
        torch.manual_seed(0)
        model = MultiExitClassifier(AutoModel.from_pretrained(path), classes=2, exits=kind)
        train_multi_exit(model, train_batches, args.epochs, args.lr)
        systems[f"{kind} at every layer"] = model
    torch.manual_seed(0)
    model = MultiExitClassifier(AutoModel.from_pretrained(path), classes=2, exits=result.exits)
    train_multi_exit(model, train_batches, args.epochs, args.lr)
    systems[f"searched exits ({', '.join(result.exits)})"] = model
    report = {"task": args.task, "majority": majority, "searched": result.exits, "systems": {}}
    print(f"task {args.task}: {len(train_rows)} training, {len(held_rows)} held-out, {len(dev_rows)} dev, {len(test_rows)} test inputs; "
          f"majority class accuracy {100 * majority:.2f}\n")
    print("| exits | " + " | ".join(f"layer {i}" for i in range(1, 7)) + " |")
    print("|---|" + "---|" * 6)
    curves, dev_curves = {}, {}
    for name, model in systems.items():
        probabilities, labels = exit_probabilities(model, test_batches)
        per_exit = (probabilities.argmax(-1) == labels[:, None]).float().mean(0).tolist()
        print(f"| {name} | " + " | ".join(f"{100 * a:.2f}" for a in per_exit) + " |")
        curves[name] = {rule: curve(probabilities, labels, settings) for rule, settings in RULES.items()}
        dev_probabilities, dev_labels = exit_probabilities(model, dev_batches)
        dev_curves[name] = {rule: curve(dev_probabilities, dev_labels, settings) for rule, settings in RULES.items()}
        report["systems"][name] = {"per_exit": per_exit, "curves": curves[name], "dev_curves": dev_curves[name]}
    print("\nOperating points chosen on dev; test accuracy (test layer speed-up) of each, and the test envelope's area:\n")
    print("| exits | rule | dev-chosen for ≥ 1.5× | for ≥ 2× | area 1–3× (test envelope) |")
    print("|---|---|---|---|---|")
    fmt = lambda v: "–" if v is None else f"{100 * v[1]:.2f} ({v[0]:.2f}×)"  # noqa: E731
    choices = {}
    for name, by_rule in curves.items():
        for rule, points in by_rule.items():
            picked = {t: operating_point(dev_curves[name][rule], t) for t in (1.5, 2.0)}
            choices[(name, rule)] = picked
            report["systems"][name].setdefault("dev_chosen", {})[rule] = {
                str(t): None if i is None else {"setting": repr(RULES[rule][i]), "test": at_setting(points, i)} for t, i in picked.items()
            }
            print(f"| {name} | {rule} | {fmt(at_setting(points, picked[1.5]))} | {fmt(at_setting(points, picked[2.0]))} "
                  f"| {100 * area(points):.2f} |")
    searched_name = list(systems)[-1]
    chosen = {}
    for rule in curves[searched_name]:
        for target, index in choices[(searched_name, rule)].items():
            if index is not None:
                chosen[f"{rule} @ ≥ {target:g}× on dev: {RULES[rule][index]!r}"] = RULES[rule][index]
    speed = speed_rows(systems[searched_name], test_rows[: args.speed_examples], chosen, (1, 2))
    report["speed"] = speed
    print(f"\nSpeed of the searched exits' operating points on the first {min(args.speed_examples, len(test_rows))} test "
          "inputs, batch 1 (wall-clock: total-time ratio, and the median per-input ratio with quartiles):\n")
    print("| rule @ layer speed-up | FLOPs speed-up | wall-clock 1 thread | 2 threads |")
    print("|---|---|---|---|")
    for name, row in speed.items():
        walls = [f"{row[k]['speed_up_total']:.2f}× ({row[k]['speed_up_median']:.2f}×, {row[k]['speed_up_q1']:.2f}–"
                 f"{row[k]['speed_up_q3']:.2f}; {row[k]['median_ms']:.1f} ms)" for k in ("wall_1t", "wall_2t")]
        print(f"| {name} | {row['flops_speed_up']:.2f}× | {walls[0]} | {walls[1]} |")
    out = Path(args.out) / args.task
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
