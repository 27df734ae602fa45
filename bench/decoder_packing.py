"""The slot decoder's row packing: rows of a capacity chosen per batch by a FLOP estimate
(`nagner.modeling.decoder._pack`, since 2026-12-06) against the earlier fixed rows of 16 slots,
on the decoder phase of the models `bench/speed.py` times.

    python bench/decoder_packing.py --threads 2 --rounds 5

For each model the encoder runs once over the test set (batch 64, as `bench/speed.py`); then
`NagNerModel.decode` runs over those batches with each packing, the two interleaved round by
round (the order alternating), in one process. The entities must be the same (checked); the
table gives each packing's decoder-phase seconds as the median [min–max] over the rounds, the
per-round ratio fixed / chosen, and the FLOPs of each (FlopCounterMode, one pass).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from speed import TESTS, model_dir, summary  # bench/ is on sys.path when a bench script runs
from torch.utils.flop_counter import FlopCounterMode

import nagner.modeling.decoder as decoder_module
from nagner.data import read_sentences
from nagner.modeling import NagNerModel
from nagner.modeling.inference import encoded_batches

REPO = Path(__file__).resolve().parents[1]
MODELS = [  # (label, dataset, system, training sentences or None for the most)
    ("CoNLL, NAG", "conll", "nag", None),
    ("CoNLL, AR mode", "conll", "ar", None),
    ("CADEC, NAG (beam as tuned)", "cadec", "nag", None),
    ("CADEC 1,000 sent., NAG", "cadec", "nag", 1000),
    ("CADEC 1,000 sent., AR mode", "cadec", "ar", 1000),
]
PACKINGS = {"fixed rows of 16": (16,), "chosen per batch": decoder_module.ROW_CAPACITIES}
ORIGINAL_PACK = decoder_module._pack


def use_packing(capacities: tuple[int, ...]) -> None:
    decoder_module._pack = lambda slot_batch, group, row_cost=None: ORIGINAL_PACK(slot_batch, group, row_cost, capacities)


def decode_all(model, batches) -> list:
    return [model.decode(b.words, b.word_mask, b.detection) for b in batches]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(REPO / "bench" / "out" / "accuracy"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} threads, batch 64, {args.rounds} interleaved rounds; decoder phase s, median [min–max]\n")
    print("| model | fixed rows of 16: s | chosen per batch: s | fixed / chosen, per round | GFLOPs fixed → chosen |")
    print("|---|---|---|---|---|")
    for label, dataset, system, size in MODELS:
        model = NagNerModel.from_pretrained(str(model_dir(Path(args.runs), dataset, system, size))).eval()
        sentences = read_sentences(TESTS[dataset])
        batches = list(encoded_batches(model, sentences, 64))
        found, flops, times = {}, {}, {name: [] for name in PACKINGS}
        for name, capacities in PACKINGS.items():
            use_packing(capacities)
            with FlopCounterMode(display=False) as counter:
                found[name] = decode_all(model, batches)  # also the warm-up
            flops[name] = counter.get_total_flops() / 1e9
        first, second = found.values()
        same = all(
            [(t, i) for t, i, _ in x] == [(t, i) for t, i, _ in y] and all(abs(a[2] - b[2]) < 1e-4 for a, b in zip(x, y))
            for batch_x, batch_y in zip(first, second) for x, y in zip(batch_x, batch_y)
        )
        if not same:
            raise SystemExit(f"{label}: the packings found different entities")
        for r in range(args.rounds):
            for name in (list(PACKINGS) if r % 2 == 0 else list(PACKINGS)[::-1]):
                use_packing(PACKINGS[name])
                began = time.perf_counter()
                decode_all(model, batches)
                times[name].append(time.perf_counter() - began)
        fixed, chosen = times.values()
        print(f"| {label} | {summary(fixed, 3)} | {summary(chosen, 3)} | {summary([a / b for a, b in zip(fixed, chosen)], 3)}× | "
              f"{flops['fixed rows of 16']:.1f} → {flops['chosen per batch']:.1f} |", flush=True)
    use_packing(decoder_module.ROW_CAPACITIES)


if __name__ == "__main__":
    main()
