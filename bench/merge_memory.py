"""Memory of merging LoRA into the weights: what `merge` holds after merging and its peak on the way.

Each system runs in a fresh child process on the same model: the linear layers of ``--layers``
transformer blocks of Llama-7B shape (q, k, v, o 4096×4096; gate, up 4096→11008; down back) in
bfloat16, LoRA r = 16 on all seven. Memory is the process's resident set (``/proc/self/status``):
"held" is what stays after merging, "peak" the high-water mark during the merge (reset just before
it), both above the resident set before merging. Compared: ours (`merge`), ours keeping the original
weights for a bit-exact `unmerge` (`merge(..., keep_original=True)`, what `merge` always did before),
and `peft`'s `merge_adapter`.

    python bench/merge_memory.py --layers 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

SHAPES = {  # module → (in, out) of one Llama-7B block
    "q_proj": (4096, 4096), "k_proj": (4096, 4096), "v_proj": (4096, 4096), "o_proj": (4096, 4096),
    "gate_proj": (4096, 11008), "up_proj": (4096, 11008), "down_proj": (11008, 4096),
}
SYSTEMS = ("ours", "ours, keep_original", "peft")


def rss_mib(field: str = "VmRSS") -> float:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as refs:
        refs.write("5")  # resets VmHWM to the current resident set


def build(layers: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Module()
    model.layers = nn.ModuleList()
    for _ in range(layers):
        block = nn.Module()
        for name, (d_in, d_out) in SHAPES.items():
            linear = nn.Linear(d_in, d_out, bias=False, dtype=torch.bfloat16)
            with torch.no_grad():
                linear.weight.normal_(0, 0.02)
            setattr(block, name, linear)
        model.layers.append(block)
    return model


def child(system: str, layers: int) -> dict:
    import torch

    torch.set_num_threads(2)
    model = build(layers)
    targets = list(SHAPES)
    if system == "peft":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets, init_lora_weights=False))
        merge = model.merge_adapter
    else:
        from nagner.peft import LoraConfig, attach
        from nagner.peft import merge as merge_adapters

        attach(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets, init_lora_weights="gaussian"))
        keep = system.endswith("keep_original")
        def merge():
            merge_adapters(model, keep_original=keep)
    weights = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "lora" not in n) / 2**20
    before = rss_mib()
    reset_peak()
    merge()
    return {"held": rss_mib() - before, "peak": rss_mib("VmHWM") - before, "weights": weights}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.layers)))
        return
    rows = {}
    for system in SYSTEMS:
        out = subprocess.run(
            [sys.executable, __file__, "--layers", str(args.layers), "--child", system],
            capture_output=True, text=True, check=True,
        ).stdout
        rows[system] = json.loads(out.strip().splitlines()[-1])
    weights = rows["ours"]["weights"]
    print(f"{args.layers} Llama-7B blocks' linear layers, bfloat16: {weights:.0f} MiB of merged weights")
    print("| system | held after merge (MiB) | peak during merge (MiB) | held / weights |")
    print("|---|---|---|---|")
    for system, row in rows.items():
        print(f"| {system} | {row['held']:.0f} | {row['peak']:.0f} | {row['held'] / weights:.2f} |")


if __name__ == "__main__":
    main()
