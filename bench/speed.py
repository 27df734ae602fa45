"""Speed benchmark: NAG-NER vs token classification end to end, and NAG-NER's decoder phase in
NAG vs AR mode and at beam 1 vs 4, on CoNLL-2003 test and CADEC test, plus peak memory.

Uses the models `bench/accuracy.py` trained (bench/out/accuracy/<dataset>/runs/.../best), so the
number of detected slots is the real one. Every measurement is one child process (its peak RSS is
its own) with the same thread count, sentences (given as words) and batch size, after a warm-up
pass; the systems are interleaved round by round (A B C A B C …) so that drift in the machine's
speed hits them alike, and the table gives the median and the min–max spread over the rounds.

    python bench/speed.py --threads 2 --rounds 5
    python bench/speed.py --threads 2 --rounds 3 --datasets conll --batch-size 1 --sentences 500   # one at a time
    python bench/speed.py --baseline-code ../old-checkout   # + the main NAG-NER rows at another commit's code

End to end = words → sub-tokens → encoder → heads → entities (`predict_sentences`). Decoder phase =
`NagNerModel.decode` on precomputed encoder outputs of the same batches: slot rule, slot decoder,
beam search, post-processing. The AR mode runs the same decoder step by step (greedy, until every
slot said END, then the type pass; the prefix is recomputed at each step, without a key/value cache).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from report import dev_f1  # bench/ is on sys.path when a bench script runs

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TESTS = {"conll": DATA / "conll2003" / "eng.testb", "cadec": DATA / "cadec" / "test.json"}


def model_dir(runs: Path, dataset: str, system: str, train_sentences: int | None = None) -> Path:
    """A model `bench/accuracy.py` trained: variant "full", seed 42, ``train_sentences`` (default:
    the most), the learning rate with the best dev F1 (after decoding was tuned, where it was)."""
    found = [json.loads(p.read_text()) for p in (runs / dataset).glob(f"{system}-full-*.json")]
    found = [r for r in found if r["settings"]["seed"] == 42]
    size = train_sentences or max((r["settings"]["train_sentences"] for r in found), default=0)
    found = [r for r in found if r["settings"]["train_sentences"] == size]
    if not found:
        raise SystemExit(f"no trained {system} model for {dataset} under {runs}; run bench/accuracy.py first")
    best = max(found, key=lambda r: dev_f1(r) or 0)
    settings = best["settings"]
    name = f"{system}-full-lr{settings['lr']:g}-seed42-n{size}-e{settings['epochs']}"
    return runs / dataset / "runs" / name / "best"


def worker(dataset: str, system: str, folder: Path, batch_size: int, beam: int | None, limit: int | None = None) -> dict:
    from nagner.data import read_sentences

    sentences = read_sentences(TESTS[dataset])[:limit]
    for s in sentences:
        s.entities = []
    result: dict = {"sentences": len(sentences)}
    if system == "tokcls":
        from nagner.token_classification import TokenClassificationBaseline

        baseline = TokenClassificationBaseline.load(folder)
        baseline.predict(sentences[:200], batch_size=batch_size)  # warm-up
        start = time.perf_counter()
        baseline.predict(sentences, batch_size=batch_size)
        result["seconds"] = time.perf_counter() - start
    else:
        from nagner.modeling import NagNerModel
        from nagner.modeling.inference import encoded_batches
        from nagner.modeling.slots import inference_slot_counts

        model = NagNerModel.from_pretrained(str(folder)).eval()
        if beam is not None:
            model.config.beam_size = beam
        model.predict_sentences(sentences[:200], batch_size=batch_size)  # warm-up
        start = time.perf_counter()
        model.predict_sentences(sentences, batch_size=batch_size)
        result["seconds"] = time.perf_counter() - start
        encoded = list(encoded_batches(model, sentences, batch_size))
        for b in encoded[:2]:  # warm-up
            model.decode(b.words, b.word_mask, b.detection)
        start = time.perf_counter()
        for b in encoded:
            model.decode(b.words, b.word_mask, b.detection)
        result["decoder_seconds"] = time.perf_counter() - start
        slots = sum(int(inference_slot_counts(b.detection.start_logits, b.detection.count_logits, b.word_mask,
                                               model.config).sum()) for b in encoded)
        result["slots"] = slots
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def summary(values: list[float], digits: int = 2) -> str:
    """Median [min–max] of ``values``."""
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(REPO / "bench" / "out" / "accuracy"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--datasets", default="conll,cadec")
    parser.add_argument("--sentences", type=int, default=None, help="the first N test sentences only (default: all)")
    parser.add_argument("--baseline-code", default=None, metavar="DIR",
                        help="a checkout of another commit: the main NAG-NER row also runs with that package, "
                             "interleaved in the same rounds (same model folder)")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)  # dataset system folder beam
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        dataset, system, folder, beam = args.worker
        beam_size = None if beam == "-" else int(beam)
        print(json.dumps(worker(dataset, system, Path(folder), args.batch_size, beam_size, args.sentences)))
        return
    runs = Path(args.runs)
    plans = {
        "conll": [("token classification", "tokcls", None, "-"), ("NAG-NER", "nag", None, "-"),
                  ("NAG-NER (AR mode)", "ar", None, "-")],
        # beam cost on the main CADEC model; NAG vs AR decoder on a pair trained alike (1,000 sentences)
        "cadec": [("NAG-NER, beam 1", "nag", None, "1"), ("NAG-NER, beam 4", "nag", None, "4"),
                  ("NAG-NER (1,000 sent.), beam 1", "nag", 1000, "1"), ("NAG-NER (AR mode, 1,000 sent.)", "ar", 1000, "-")],
    }
    baseline_rows = set()
    if args.baseline_code:  # the main NAG-NER row (second of each plan) once more, on the other code
        found = subprocess.run(["git", "-C", args.baseline_code, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        name = found.stdout.strip() or Path(args.baseline_code).name
        for plan in plans.values():
            label, *rest = plan[1]
            plan.append((f"{label} at {name}", *rest))
            baseline_rows.add(plan[-1][0])
    tables, raw = [], {}
    for dataset in args.datasets.split(","):
        plan = [(label, system, model_dir(runs, dataset, system, size), beam) for label, system, size, beam in plans[dataset]]
        rounds: dict[str, list[dict]] = {label: [] for label, *_ in plan}
        for r in range(args.rounds):
            for label, system, folder, beam in plan:
                command = [sys.executable, __file__, "--worker", dataset, system, str(folder), beam,
                           "--threads", str(args.threads), "--batch-size", str(args.batch_size)]
                command += ["--sentences", str(args.sentences)] if args.sentences else []
                env = dict(os.environ)
                if label in baseline_rows:  # that checkout's package first on the path
                    env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.baseline_code, env.get("PYTHONPATH")]))
                done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
                rounds[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"{dataset} round {r + 1} {label}: {rounds[label][-1]['seconds']:.2f} s", flush=True)
        raw[dataset] = rounds
        first = plan[0][0]
        n = rounds[first][0]["sentences"]
        lines = [f"{dataset}: {n} test sentences, {args.threads} threads, batch {args.batch_size}, "
                 f"{args.rounds} interleaved rounds, median [min–max]", "",
                 "| system | end to end sent/s | vs first row | decoder phase s | slots | peak RSS MiB |", "|---|---|---|---|---|---|"]
        base = [n / x["seconds"] for x in rounds[first]]
        for label, *_ in plan:
            rows = rounds[label]
            speed = [n / x["seconds"] for x in rows]
            ratio = [s / b for s, b in zip(speed, base)]
            decoder = summary([x["decoder_seconds"] for x in rows]) if "decoder_seconds" in rows[0] else "–"
            lines.append(f"| {label} | {summary(speed)} | {summary(ratio)}× | {decoder} | {rows[0].get('slots', '–')} | "
                         f"{max(x['peak_rss_mb'] for x in rows):.0f} |")
        ar_label = "NAG-NER (AR mode)" if dataset == "conll" else "NAG-NER (AR mode, 1,000 sent.)"
        ar = [x["decoder_seconds"] for x in rounds[ar_label]]
        nag_label = "NAG-NER" if dataset == "conll" else "NAG-NER (1,000 sent.), beam 1"
        nag = [x["decoder_seconds"] for x in rounds[nag_label]]
        lines += ["", f"Decoder phase, AR time / NAG time ({nag_label}), per round: {summary([a / b for a, b in zip(ar, nag)])}×", ""]
        tables += lines
        print("\n".join(lines), flush=True)
    default_run = args.batch_size == parser.get_default("batch_size") and not args.sentences
    out = runs.parent / ("speed.json" if default_run else f"speed-b{args.batch_size}.json")
    out.write_text(json.dumps({"command": "python " + " ".join(sys.argv), "rounds": raw, "tables": tables}, indent=2))


if __name__ == "__main__":
    main()
