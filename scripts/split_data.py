"""Split an annotated file into train / dev / test files by a seeded shuffle (W2NER JSON out, which
holds flat, nested and discontinuous entities alike).

    python scripts/split_data.py data/sample_discontinuous.json runs/quickstart/data --sizes 200 40 60

Writes OUT/train.json, OUT/dev.json and OUT/test.json; the sizes must add up to at most the number
of sentences. The same seed (default 0) gives the same split that `bench/accuracy.py --dataset
sample` uses.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from nagner.data import read_sentences, write_w2ner
from nagner.errors import NagNerInputError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="an annotated file (CoNLL, W2NER JSON, nagner jsonl)")
    parser.add_argument("out", type=Path, help="folder for train.json, dev.json, test.json")
    parser.add_argument("--sizes", type=int, nargs=3, default=(200, 40, 60), metavar=("TRAIN", "DEV", "TEST"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        sentences = read_sentences(args.data)
    except NagNerInputError as error:
        print(f"split_data: error: {error}", file=sys.stderr)
        return 2
    if sum(args.sizes) > len(sentences) or min(args.sizes) < 1:
        print(f"split_data: error: sizes {list(args.sizes)} do not fit {len(sentences)} sentences", file=sys.stderr)
        return 2
    random.Random(args.seed).shuffle(sentences)
    args.out.mkdir(parents=True, exist_ok=True)
    start = 0
    for name, size in zip(("train", "dev", "test"), args.sizes, strict=True):
        write_w2ner(sentences[start : start + size], args.out / f"{name}.json")
        start += size
    print(f"{args.data}: {' / '.join(map(str, args.sizes))} sentences -> {args.out}/{{train,dev,test}}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
