"""Multi-tenant throughput: one batch whose sequences use 8 different LoRA adapters.

Systems, measured in turn in one process on the same batch (median of ``--repeats`` rounds):

* ours, `adapter_batch` (every layer's deltas for the whole batch in two batched matmuls);
* `peft`'s ``adapter_names`` path (the same adapters, loaded by `peft` from folders we saved);
* one adapter for the whole batch, unmerged (ours) — the cost a mixed batch should approach;
* one adapter merged into the weights (ours); the base model.

    python bench/multi_tenant.py --threads 2 --repeats 3 --batch-size 64 --seq-len 32

Goals (issue): ours ≥ 0.8× the single unmerged adapter, ≥ 2× `peft`.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peft_inference import (  # noqa: E402
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

from nagner.peft import LoraConfig, adapter_batch, attach, merge, save_adapter, set_active  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_arguments(parser)
    parser.set_defaults(batch_size=64, seq_len=32, repeats=3)
    parser.add_argument("--adapters", type=int, default=8)
    parser.add_argument("--ranks", default="8,16", help="ranks given to the adapters in turn")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base, description = load_encoder(args)
    inputs = batch_inputs(base, args.batch_size, args.seq_len, args.seed)
    ranks = [int(r) for r in args.ranks.split(",")]
    names = [f"tenant{i}" for i in range(args.adapters)]
    model = copy.deepcopy(base)
    for i, name in enumerate(names):
        r = ranks[i % len(ranks)]
        config = LoraConfig(r=r, lora_alpha=2 * r, **ENCODER_TARGETS)
        attach(model, config, name)
    randomize_lora(model, args.seed)
    single = max(names, key=lambda n: ranks[names.index(n) % len(ranks)])  # a largest-rank adapter
    set_active(model, single)
    merged = copy.deepcopy(model)
    merge(merged)
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
        f"mixed, {len(names)} adapters (ours, adapter_batch)": ours_mixed,
        f"mixed, {len(names)} adapters (peft, adapter_names)": lambda: (
            theirs(**inputs, adapter_names=per_sample).last_hidden_state
        ),
        "single adapter, unmerged (ours)": lambda: model(**inputs).last_hidden_state,
        "single adapter, merged (ours)": lambda: merged(**inputs).last_hidden_state,
        "base model": lambda: base(**inputs).last_hidden_state,
    }
    with torch.no_grad():
        difference = max_difference(systems[next(iter(systems))](), list(systems.values())[1]())
        seconds = time_round_robin(systems, args.repeats)

    speed = {name: args.batch_size / s for name, s in seconds.items()}
    reference, peft_speed = speed["single adapter, unmerged (ours)"], list(speed.values())[1]
    rows = [
        [name, f"{value:.1f}", f"{value / reference:.2f}×", f"{value / peft_speed:.2f}×"]
        for name, value in speed.items()
    ]
    single_rank = ranks[names.index(single) % len(ranks)]
    print(
        f"encoder: {description}; batch {args.batch_size} × {args.seq_len} tokens; {len(names)} LoRA "
        f"adapters, ranks {args.ranks}, on q, k, v, o, FFN up/down; single = {single} (r={single_rank}); "
        f"{args.threads} threads; median of {args.repeats} rounds (CPU shared with other jobs)\n"
    )
    print(markdown_table(["system", "sequences/s", "vs single unmerged", "vs peft mixed"], rows))
    print(f"\nmax |Δ| between ours and peft's mixed-batch outputs: {difference:.1e}")


if __name__ == "__main__":
    main()
