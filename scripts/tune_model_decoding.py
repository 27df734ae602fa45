"""Tune a trained model's decoding settings on dev data and write them into its config.json only.

    python scripts/tune_model_decoding.py MODEL_DIR DEV_FILE [--train TRAIN_FILE]

Start threshold, beam width, END bias and score threshold are chosen on DEV_FILE
(`nagner.modeling.tuning.tune_decoding`); with --train, the overlap mode follows from the training
data (`nagner.training.data_settings`: "flat" when no two training entities overlap). The weights
are not rewritten (a shipped float16 model stays float16). `nagner train --dev` does all of this
itself; the script is for models trained before, such as the shipped default model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nagner.checkpoint import load_checkpoint
from nagner.data import read_sentences
from nagner.modeling.tuning import tune_decoding
from nagner.training import data_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("dev", type=Path)
    parser.add_argument("--train", type=Path, help="training data: sets the overlap mode")
    args = parser.parse_args()
    model = load_checkpoint(args.model)
    if args.train:
        model.config.overlap = data_settings(read_sentences(args.train))["overlap"]
    best, _ = tune_decoding(model, read_sentences(args.dev))
    path = args.model / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(best.settings(), overlap=model.config.overlap)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{path}: {best.settings()}, overlap {model.config.overlap} (dev F1 {100 * best.f1:.2f})")


if __name__ == "__main__":
    main()
