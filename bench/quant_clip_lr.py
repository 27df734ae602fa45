"""Sweep the clip learning rate of the learned quantizers (PACT's α, QuantGPT's γ) on **dev**, for
the seq2seq teacher of `generative_compression.py --model seq2seq` (CoNLL-2003 entity lists).

Why: the two methods learn clips on different scales. PACT's α is a clip in weight units (about
0.15 for this model's weights), QuantGPT's γ a multiple of mean|w| (about 3.5), so one clip learning
rate moves PACT's clip about 20× faster, relative to its size, than QuantGPT's. Each method gets its best
rate from this sweep, chosen on dev (eng.testa), before any test number is read.

    python bench/quant_clip_lr.py --teacher bench/out/gencomp-seq2seq/teacher --bits 4 \
        --granularity channel --methods pact=1e-3,1e-2 quantgpt=1e-3,3e-2,3e-1

Each run: ``--qat-steps`` steps of 8 eng.train examples, logit KD (QuantGPT: no contrastive term,
to isolate the quantizer), then teacher-forced perplexity on the first ``--dev-sentences`` of
eng.testa. Prints one row per (method, rate) and writes ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch
from generative_compression import clip_rates, entity_pairs
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from nagner.compression.language_modeling import language_model_loss, make_batches
from nagner.compression.quantgpt import QuantOptions, quantize_with_qat

transformers_logging.disable_progress_bar()
warnings.filterwarnings("ignore", message="Version v4.12.0 introduces", category=FutureWarning)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="bench/out/gencomp-seq2seq/teacher")
    parser.add_argument("--data", default="../shared/data/conll2003")
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--granularity", choices=["tensor", "channel"], default="channel")
    parser.add_argument("--methods", type=clip_rates, nargs="+", required=True)
    parser.add_argument("--qat-steps", type=int, default=100)
    parser.add_argument("--dev-sentences", type=int, default=640)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/out/quant-clip-lr.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    teacher = AutoModelForSeq2SeqLM.from_pretrained(args.teacher).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    # generative_compression.py saves the tokenizer with the warm start, in teacher/start
    warm_start = Path(args.teacher) / "start"
    tokenizer = AutoTokenizer.from_pretrained(warm_start if (warm_start / "tokenizer_config.json").is_file() else args.teacher)
    train = make_batches(tokenizer, entity_pairs(f"{args.data}/eng.train"), batch_size=8, max_length=64)
    dev = make_batches(tokenizer, entity_pairs(f"{args.data}/eng.testa")[: args.dev_sentences], batch_size=64, max_length=64)
    rows = [{"method": "teacher", "dev_perplexity": language_model_loss(teacher, dev)["perplexity"]}]
    print(json.dumps(rows[-1]), flush=True)
    for method, rates in args.methods:
        for rate in rates:
            start = time.time()
            options = QuantOptions(method=method, bits=args.bits, granularity=args.granularity, steps=args.qat_steps,
                                   clip_learning_rate=rate, contrastive_weight=0.0, seed=args.seed)
            student, _ = quantize_with_qat(teacher, train, options)
            rows.append({"method": method, "clip_learning_rate": rate, "bits": args.bits, "granularity": args.granularity,
                         "dev_perplexity": language_model_loss(student, dev)["perplexity"], "seconds": time.time() - start})
            print(json.dumps(rows[-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
