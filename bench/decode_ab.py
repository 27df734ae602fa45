"""The decoder phase of this code against another checkout's `decode`, in one process: both run
over the same encoded batches, alternating round by round (the order swapped every round), so the
machine's drift hits them alike; whole-process timings (`bench/speed.py`) move by ±10 % here.

    python bench/decode_ab.py --baseline-code ../checkout-fd86882 --dataset conll --batch-size 64
    python bench/decode_ab.py --baseline-code ../checkout-fd86882 --dataset cadec --batch-size 64
    python bench/decode_ab.py --baseline-code ../checkout-fd86882 --dataset conll --batch-size 1 --sentences 500

The baseline is that checkout's `nagner/modeling/predictor.py` (its `NagNerPredictor.decode`, run on
this code's model and heads) and, with ``--baseline-sdpa``, the decoder attention as it was before
bc04c08 (`scaled_dot_product_attention`). Uses the models `bench/accuracy.py` trained (CADEC: the
1,000-sentence model at beam 1, as in `bench/speed.py`'s NAG vs AR rows).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from speed import TESTS, model_dir  # bench/ is on sys.path when a bench script runs

from nagner.data import read_sentences
from nagner.modeling import NagNerModel, decoder_layers
from nagner.modeling.inference import encoded_batches

REPO = Path(__file__).resolve().parents[1]


def sdpa_attend(attention, q, k, v, mask, dropout):
    """The decoder attention before bc04c08."""
    R, Q, d = q.shape
    out = F.scaled_dot_product_attention(decoder_layers._heads(q, attention.num_heads), k, v, attn_mask=mask, dropout_p=dropout)
    return attention.out_proj(out.transpose(1, 2).reshape(R, Q, d))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-code", required=True, metavar="DIR")
    parser.add_argument("--baseline-sdpa", action="store_true", help="the baseline also uses SDPA attention")
    parser.add_argument("--dataset", choices=("conll", "cadec"), default="conll")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sentences", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", default=str(REPO / "bench" / "out" / "accuracy"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = importlib.util.spec_from_file_location("baseline_predictor", Path(args.baseline_code) / "nagner/modeling/predictor.py")
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    size = 1000 if args.dataset == "cadec" else None
    model = NagNerModel.from_pretrained(str(model_dir(Path(args.runs), args.dataset, "nag", size))).eval()
    if args.dataset == "cadec":
        model.config.beam_size = 1
    batches = list(encoded_batches(model, read_sentences(TESTS[args.dataset])[: args.sentences], args.batch_size))
    current = (type(model).decode, decoder_layers._attend)
    variants = {"current": current,
                "baseline": (baseline.NagNerPredictor.decode, sdpa_attend if args.baseline_sdpa else current[1])}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(args.rounds + 1):  # round 0 warms up
        for name in (["current", "baseline"] if round_index % 2 else ["baseline", "current"]):
            type(model).decode, decoder_layers._attend = variants[name]
            start = time.perf_counter()
            for b in batches:
                model.decode(b.words, b.word_mask, b.detection)
            if round_index:
                times[name].append(time.perf_counter() - start)
    type(model).decode, decoder_layers._attend = current
    ratios = [b / c for b, c in zip(times["baseline"], times["current"])]
    print(f"{args.dataset}, batch {args.batch_size}, {len(batches)} batches: current {statistics.median(times['current']):.3f} s, "
          f"baseline {statistics.median(times['baseline']):.3f} s (medians); baseline / current per round: "
          + ", ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    main()
