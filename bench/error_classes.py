"""Where entity-level errors come from: NAG-NER and token classification on the same dev sentences.

    python bench/error_classes.py --nag bench/out/accuracy/conll/runs/nag-full-.../best \
        --tokcls bench/out/accuracy/conll/runs/tokcls-full-.../best [--dataset conll]

Each gold entity of the dev subset that `bench/accuracy.py` selects models on (1,000 seeded
sentences) falls in one class: found; right span, wrong type; a prediction with the same first word
but another span; a prediction overlapping it from another first word; and otherwise missed (for
NAG-NER split into "start not detected" — the detector's start probability below the model's
threshold — and "start detected, no entity kept"). Wrong predictions are split into wrong type,
wrong boundary (overlapping a gold entity) and spurious. Dev data only: this guides the recipe
without looking at test.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

import torch

from nagner.data import Sentence, read_sentences

REPO = Path(__file__).resolve().parents[1]

DATA = REPO.parent / "shared" / "data"
DEV = {"conll": "conll2003/eng.testa", "cadec": "cadec/dev.json"}
CLASSES = (
    "found", "right span, wrong type", "same first word, other span", "overlapped from another first word",
    "missed: start not detected", "missed: start detected, no entity kept", "missed",
)


def classify(sentences: list[Sentence], predicted: list[list], start_missed=None) -> tuple[Counter, Counter]:
    """(gold classes, wrong-prediction classes). start_missed(sentence index, word) → bool, or None."""
    gold_classes, wrong = Counter(), Counter()
    for index, (sentence, found) in enumerate(zip(sentences, predicted)):
        gold = {(tuple(e.indices), e.type) for e in sentence.entities}
        got = {(tuple(e.indices), e.type) for e in found}
        for span, kind in gold:
            if (span, kind) in got:
                gold_classes["found"] += 1
            elif any(s == span for s, _ in got):
                gold_classes["right span, wrong type"] += 1
            elif any(s[0] == span[0] for s, _ in got):
                gold_classes["same first word, other span"] += 1
            elif any(set(s) & set(span) for s, _ in got):
                gold_classes["overlapped from another first word"] += 1
            elif start_missed is None:
                gold_classes["missed"] += 1
            elif start_missed(index, span[0]):
                gold_classes["missed: start not detected"] += 1
            else:
                gold_classes["missed: start detected, no entity kept"] += 1
        gold_spans = {s for s, _ in gold}
        for span, _ in got - gold:
            if span in gold_spans:
                wrong["wrong type"] += 1
            elif any(set(span) & set(g) for g in gold_spans):
                wrong["wrong boundary"] += 1
            else:
                wrong["spurious"] += 1
    return gold_classes, wrong


def nag_errors(path: str, dev: list[Sentence]) -> tuple[Counter, Counter]:
    from nagner.checkpoint import load_checkpoint
    from nagner.modeling.inference import encoded_batches

    model = load_checkpoint(path).eval()
    p_start: dict[tuple[int, int], float] = {}
    with torch.no_grad():
        for batch in encoded_batches(model, dev, 64):
            probs = batch.detection.start_logits.sigmoid()
            for row, feature in enumerate(batch.features):
                for word in range(len(feature["word_first"])):
                    p_start[(feature["sentence_index"], feature["word_offset"] + word)] = float(probs[row, word])
    threshold = model.config.start_threshold
    return classify(dev, model.predict_sentences(dev, batch_size=64), lambda s, w: p_start.get((s, w), 0.0) <= threshold)


def tokcls_errors(path: str, dev: list[Sentence]) -> tuple[Counter, Counter]:
    from nagner.token_classification import TokenClassificationBaseline

    return classify(dev, TokenClassificationBaseline.load(path).predict(dev, batch_size=64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nag", help="a saved NAG-NER model folder")
    parser.add_argument("--tokcls", help="a saved token-classification baseline folder")
    parser.add_argument("--dataset", choices=sorted(DEV), default="conll")
    parser.add_argument("--dev-limit", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dev = read_sentences(DATA / DEV[args.dataset])
    if args.dev_limit < len(dev):
        dev = random.Random(42).sample(dev, args.dev_limit)  # the subset bench/accuracy.py selects on
    n_gold = sum(len(s.entities) for s in dev)
    columns = [(name, fn(path, dev)) for name, fn, path in
               (("NAG-NER", nag_errors, args.nag), ("token classification", tokcls_errors, args.tokcls)) if path]
    print(f"{len(dev)} dev sentences, {n_gold} gold entities\n")
    print("| gold entity | " + " | ".join(name for name, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for kind in CLASSES:
        if any(gold[kind] for _, (gold, _) in columns):
            print(f"| {kind} | " + " | ".join(f"{gold[kind]} ({100 * gold[kind] / n_gold:.1f} %)" for _, (gold, _) in columns) + " |")
    print("\n| wrong prediction | " + " | ".join(name for name, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for kind in ("wrong type", "wrong boundary", "spurious"):
        print(f"| {kind} | " + " | ".join(str(wrong[kind]) for _, (_, wrong) in columns) + " |")


if __name__ == "__main__":
    main()
