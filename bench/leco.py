"""LECO on all-MiniLM-L6-v2 (6 layers) for a sentence task derived from CoNLL-2003: "does the sentence
mention an organisation?". Multi-exit models with linear exits, mean-pool exits and searched exits
(first-order DARTS, then retrained), the same training budget each; per-exit accuracy on CoNLL-2003
test; accuracy against speed-up (6 / mean exit layer) for four exit rules on the same weights.

    python bench/leco.py --train 4000 --held-out 500 --epochs 1 --search-steps 125

Training data: the first ``--train`` sentences of eng.train; the search's held-out batches: the next
``--held-out``; evaluation: eng.testb (3,453 sentences). Speed-up here counts layers (wall-clock and
FLOPs rows are not measured yet).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
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


def examples(sentences, tokenizer) -> list[dict[str, torch.Tensor]]:
    rows = []
    for sentence in sentences:
        encoded = tokenizer(" ".join(sentence.words), truncation=True, max_length=64, return_tensors="pt")
        label = int(any(entity.type == "ORG" for entity in sentence.entities))
        rows.append({"input_ids": encoded["input_ids"][0], "label": label})
    return rows


def batches(rows, size: int, seed: int | None = None) -> list[dict[str, torch.Tensor]]:
    order = list(range(len(rows)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    out = []
    for start in range(0, len(order), size):
        chunk = [rows[i] for i in order[start : start + size]]
        width = max(len(r["input_ids"]) for r in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for i, r in enumerate(chunk):
            ids[i, : len(r["input_ids"])] = r["input_ids"]
            mask[i, : len(r["input_ids"])] = 1
        out.append({"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([r["label"] for r in chunk])})
    return out


def train(model: MultiExitClassifier, train_batches, epochs: int, lr: float) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(epochs):
        for batch in train_batches:
            loss = model(**batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()


@torch.no_grad()
def exit_probabilities(model: MultiExitClassifier, test_batches) -> tuple[torch.Tensor, torch.Tensor]:
    probabilities = [model.exit_logits(b["input_ids"], b["attention_mask"]).softmax(-1) for b in test_batches]
    return torch.cat(probabilities), torch.cat([b["labels"] for b in test_batches])


def curve(probabilities: torch.Tensor, labels: torch.Tensor, rules) -> list[tuple[float, float]]:
    points = []
    for rule in rules:
        layers, answers = decide(rule, probabilities)
        points.append((probabilities.shape[1] / layers.float().mean().item(), (answers == labels).float().mean().item()))
    return sorted(points)


def accuracy_at(points: list[tuple[float, float]], speed_up: float) -> float | None:
    """The best accuracy among the settings at least ``speed_up`` fast (None if none is)."""
    fast = [accuracy for s, accuracy in points if s >= speed_up]
    return max(fast) if fast else None


def area(points: list[tuple[float, float]]) -> float:
    """Area under accuracy vs speed-up between 1× and 3× (flat extension, trapezoids), divided by 2."""
    grid = [1 + 0.1 * i for i in range(21)]
    values = [accuracy_at(points, s) or 0.0 for s in grid]
    return sum((a + b) / 2 * 0.1 for a, b in zip(values, values[1:])) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--search-steps", type=int, default=125)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "leco"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = resolve_encoder(TEACHER)
    tokenizer = AutoTokenizer.from_pretrained(path)
    sentences = read_sentences(str(DATA / "eng.train"))
    train_rows = examples(sentences[: args.train], tokenizer)
    held_rows = examples(sentences[args.train : args.train + args.held_out], tokenizer)
    test_rows = examples(read_sentences(str(DATA / "eng.testb")), tokenizer)
    train_batches, held_batches = batches(train_rows, 32, seed=0), batches(held_rows, 32, seed=1)
    test_batches = batches(test_rows, 64)
    majority = max(sum(r["label"] for r in test_rows), len(test_rows) - sum(r["label"] for r in test_rows)) / len(test_rows)
    systems = {}
    for name, exits in (("linear exits (CLS)", "cls_linear"), ("mean-pool exits", "mean_linear")):
        torch.manual_seed(0)
        model = MultiExitClassifier(AutoModel.from_pretrained(path), classes=2, exits=exits)
        train(model, train_batches, args.epochs, args.lr)
        systems[name] = model
    torch.manual_seed(0)
    searched = MultiExitClassifier(AutoModel.from_pretrained(path), classes=2)
    result = search_exits(searched, train_batches, held_batches, steps=args.search_steps, learning_rate=args.lr)
    torch.manual_seed(0)
    model = MultiExitClassifier(AutoModel.from_pretrained(path), classes=2, exits=result.exits)
    train(model, train_batches, args.epochs, args.lr)
    systems[f"searched exits ({', '.join(result.exits)})"] = model
    report = {"majority": majority, "searched": result.exits, "systems": {}}
    print(f"test sentences {len(test_rows)}, majority class accuracy {100 * majority:.2f}\n")
    print("| exits | " + " | ".join(f"layer {i}" for i in range(1, 7)) + " |")
    print("|---|" + "---|" * 6)
    curves = {}
    for name, model in systems.items():
        probabilities, labels = exit_probabilities(model, test_batches)
        per_exit = (probabilities.argmax(-1) == labels[:, None]).float().mean(0).tolist()
        print(f"| {name} | " + " | ".join(f"{100 * a:.2f}" for a in per_exit) + " |")
        curves[name] = {rule: curve(probabilities, labels, settings) for rule, settings in RULES.items()}
        report["systems"][name] = {"per_exit": per_exit, "curves": curves[name]}
    print("\n| exits | rule | accuracy at ≥ 1.5× | at ≥ 2× | area 1–3× |")
    print("|---|---|---|---|---|")
    for name, by_rule in curves.items():
        for rule, points in by_rule.items():
            at15, at2 = accuracy_at(points, 1.5), accuracy_at(points, 2.0)
            fmt = lambda v: "–" if v is None else f"{100 * v:.2f}"  # noqa: E731
            print(f"| {name} | {rule} | {fmt(at15)} | {fmt(at2)} | {100 * area(points):.2f} |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
