"""Speed benchmark on CoNLL-2003 test: sentences/s end to end and in the decoder phase, peak memory.

Uses the models that `bench/accuracy.py --dataset conll` trained and saved (bench/out/models/
conll-{nag,ar,tokcls}), so the number of detected slots is the real one. Each system runs in
its own child process (so its peak RSS is its own), with the same thread count, the same
sentences (given as words) and batch size, after a warm-up.

    python bench/speed.py --threads 2 --batch-size 64

End to end = words → sub-tokens → encoder → heads → entities. Decoder phase = for NAG-NER, the
slot decoder and pointer grammar on precomputed encoder outputs (`NagNerModel.decode`); the AR
mode runs the same decoder step by step (greedy, until every slot said END, then the type pass;
the prefix is recomputed each step, no key/value cache — with L = 8 pointer positions per slot
a cache would save little, and both modes share every other line).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
DATA = REPO.parent / "shared" / "data" / "conll2003" / "eng.testb"
SYSTEMS = {"tokcls": "token classification", "nag": "NAG-NER", "ar": "NAG-NER (AR decoding)"}


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def worker(system: str, models: Path, batch_size: int, repeats: int) -> dict:
    from nagner.data import read_conll

    sentences = read_conll(DATA)
    result: dict = {"system": SYSTEMS[system], "sentences": len(sentences)}
    if system == "tokcls":
        from token_classification import TokenClassificationBaseline
        from transformers import AutoModelForTokenClassification

        folder = models / "conll-tokcls"
        baseline = TokenClassificationBaseline(folder)
        meta = json.loads((folder / "labels.json").read_text())
        baseline.labels, baseline.max_length = meta["labels"], meta["max_length"]
        baseline.model = AutoModelForTokenClassification.from_pretrained(str(folder)).eval()
        baseline.predict(sentences[:200], batch_size=batch_size)  # warm-up
        seconds = best_of(repeats, lambda: baseline.predict(sentences, batch_size=batch_size))
    else:
        from nagner.modeling import NagNerCollator, NagNerModel, encode_sentences

        model = NagNerModel.from_pretrained(str(models / f"conll-{system}")).eval()
        model.predict_sentences(sentences[:200], batch_size=batch_size)  # warm-up
        seconds = best_of(repeats, lambda: model.predict_sentences(sentences, batch_size=batch_size))
        # decoder phase alone, on the same batches predict_sentences builds
        features, _ = encode_sentences(sentences, model.tokenizer, model.config)
        features.sort(key=lambda f: len(f["input_ids"]))
        collate = NagNerCollator(model.tokenizer.pad_token_id or 0, model.config.max_pointers)
        encoded = []
        with torch.no_grad():
            for begin in range(0, len(features), batch_size):
                batch = collate([f for f in features[begin : begin + batch_size] if f["word_first"]])
                words = model.encode_words(
                    batch["input_ids"], batch["attention_mask"], batch["word_first"], batch["word_last"]
                )
                start_logits, _, count_logits = model.detector(words)
                encoded.append((words, batch["word_mask"], start_logits, count_logits))

        def decode_all() -> None:
            for words, mask, start_logits, count_logits in encoded:
                model.decode(words, mask, start_logits, count_logits)

        decode_all()  # warm-up
        result["decoder_seconds"] = best_of(repeats, decode_all)
        result["decoder_sentences_per_s"] = len(sentences) / result["decoder_seconds"]
    result["seconds"] = seconds
    result["sentences_per_s"] = len(sentences) / seconds
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=str(REPO / "bench" / "out" / "models"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", choices=sorted(SYSTEMS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.models), args.batch_size, args.repeats)))
        return
    rows = {}
    for system in SYSTEMS:
        command = [sys.executable, __file__, "--worker", system, "--models", args.models,
                   "--threads", str(args.threads), "--batch-size", str(args.batch_size), "--repeats", str(args.repeats)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows[system] = json.loads(done.stdout.strip().splitlines()[-1])
    base = rows["tokcls"]["sentences_per_s"]
    print(f"CoNLL-2003 test ({rows['nag']['sentences']} sentences), {args.threads} threads, batch {args.batch_size}")
    print(f"{'system':<24}{'sent/s':>10}{'vs tok-cls':>12}{'decoder sent/s':>16}{'peak RSS MB':>13}")
    for row in rows.values():
        decoder = f"{row['decoder_sentences_per_s']:16.0f}" if "decoder_sentences_per_s" in row else f"{'-':>16}"
        print(f"{row['system']:<24}{row['sentences_per_s']:10.0f}{row['sentences_per_s'] / base:11.2f}x{decoder}"
              f"{row['peak_rss_mb']:13.0f}")
    speedup = rows["ar"]["decoder_seconds"] / rows["nag"]["decoder_seconds"]
    print(f"decoder phase: NAG is {speedup:.2f}x faster than AR mode")
    out = Path(args.models).parent / "speed.json"
    out.write_text(json.dumps({"command": "python " + " ".join(sys.argv), "rows": rows, "nag_vs_ar_decoder": speedup}, indent=2))


if __name__ == "__main__":
    main()
