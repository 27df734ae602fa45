"""Multi-tenant throughput: one batch whose sequences use many different LoRA adapters.

For each adapter count (``--adapters 8,64,256``) these systems run in turn, round after round, on
the same batch (interleaved, the order rotating; median and the range of the in-round ratios):

* ours, `adapter_batch` (every layer's deltas for the whole batch in two batched matmuls);
* `peft`'s ``adapter_names`` path (the same adapters, loaded by `peft` from folders we saved);
* one adapter for the whole batch, unmerged (ours): the cost a mixed batch should approach.

    python bench/multi_tenant.py --threads 2 --repeats 5 --batch-size 64 --seq-len 32 --adapters 8,64,256

Goals (issue 12): ours ≥ 0.9× the single unmerged adapter at every count, ≥ 2× `peft` at 64 and
≥ 4× at 256.
"""

from __future__ import annotations

import argparse
import copy
import random
import tempfile
from pathlib import Path

import torch
from peft_inference import (
    ENCODER_TARGETS,
    add_model_arguments,
    batch_inputs,
    load_encoder,
    load_peft,
    markdown_table,
    max_difference,
    randomize_lora,
    time_round_robin,
)

from nagner.peft import LoraConfig, adapter_batch, attach, save_adapter, set_active


def measure(base, inputs, count: int, ranks: list[int], args) -> tuple[list[list[str]], float]:
    """Table rows for ``count`` adapters, and the largest difference between ours and peft."""
    names = [f"tenant{i}" for i in range(count)]
    model = copy.deepcopy(base)
    for i, name in enumerate(names):
        r = ranks[i % len(ranks)]
        attach(model, LoraConfig(r=r, lora_alpha=2 * r, **ENCODER_TARGETS), name)
    randomize_lora(model, args.seed)
    single = max(names, key=lambda n: ranks[names.index(n) % len(ranks)])  # a largest-rank adapter
    set_active(model, single)
    with tempfile.TemporaryDirectory() as folder:
        folders = {name: Path(folder) / name for name in names}
        for name, path in folders.items():
            save_adapter(model, path, name)
        theirs = load_peft(base, folders)
    per_sample = [names[i % len(names)] for i in range(args.batch_size)]
    random.Random(args.seed).shuffle(per_sample)

    def ours_mixed():
        with adapter_batch(model, per_sample):
            return model(**inputs).last_hidden_state

    systems = {
        "ours, adapter_batch": ours_mixed,
        "peft, adapter_names": lambda: theirs(**inputs, adapter_names=per_sample).last_hidden_state,
        "single adapter, unmerged (ours)": lambda: model(**inputs).last_hidden_state,
    }
    with torch.no_grad():
        difference = max_difference(systems["ours, adapter_batch"](), systems["peft, adapter_names"]())
        timings = time_round_robin(systems, args.repeats)
    ours, theirs_t, single_t = (timings[k] for k in systems)
    distinct = len(set(per_sample))
    row = [
        f"{count} ({distinct} in the batch)",
        f"{args.batch_size / ours.median:.1f}",
        f"{args.batch_size / theirs_t.median:.1f}",
        f"{args.batch_size / single_t.median:.1f}",
        f"{single_t.median / ours.median:.2f}× ({ours.spread(single_t)})",
        f"{theirs_t.median / ours.median:.2f}× ({ours.spread(theirs_t)})",
    ]
    return [row], difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.set_defaults(batch_size=64, seq_len=32, repeats=5)
    parser.add_argument("--adapters", default="8,64,256", help="adapter counts, one table row each")
    parser.add_argument("--ranks", default="8,16", help="ranks given to the adapters in turn")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base, description = load_encoder(args)
    inputs = batch_inputs(base, args.batch_size, args.seq_len, args.seed)
    ranks = [int(r) for r in args.ranks.split(",")]
    rows, differences = [], []
    for count in (int(c) for c in args.adapters.split(",")):
        count_rows, difference = measure(base, inputs, count, ranks, args)
        rows += count_rows
        differences.append(difference)
        print(markdown_table(HEADER, count_rows).splitlines()[-1], flush=True)
    print(
        f"\nencoder: {description}; batch {args.batch_size} × {args.seq_len} tokens; LoRA adapters of ranks "
        f"{args.ranks} on q, k, v, o, FFN up/down; {args.threads} threads; median of {args.repeats} interleaved "
        "rounds (range of the in-round ratios in brackets)\n"
    )
    print(markdown_table(HEADER, rows))
    print(f"\nmax |Δ| between ours and peft's mixed-batch outputs: {max(differences):.1e}")


HEADER = [
    "adapters", "ours seq/s", "peft seq/s", "single unmerged seq/s", "ours vs single", "ours vs peft",
]


if __name__ == "__main__":
    main()
