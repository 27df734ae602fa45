"""Markdown tables of bench/out/accuracy/*/*.json and bench/out/speed.json (pasted into RESULTS.md).

    python bench/report.py

Accuracy runs are grouped by dataset, training sentences and epochs. Per group: the main rows
(each system at the learning rate with the best dev F1 of its sweep, seed 42; NAG-NER's dev F1 is the
one after decoding was tuned on dev), the sweep, the
training-time ablations, the decoding-only ablations of the main NAG-NER row, and mean ± sd over
seeds where a setting was run with several.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
NAMES = {"conll": "CoNLL-2003 (flat)", "cadec": "CADEC (discontinuous)", "germeval": "GermEval 2014 (nested, 2 levels)",
         "genia": "GENIA (nested; trained on dev)", "sample": "data/sample_discontinuous.json (ours, 200/40/60 split)"}
SYSTEMS = {"nag": "NAG-NER", "ar": "NAG-NER (AR decoding)", "tokcls": "token classification"}
KINDS = ("flat", "nested", "discontinuous")


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def system_name(run: dict) -> str:
    s = run["settings"]
    name = SYSTEMS[s["system"]]
    return name if s["variant"] == "full" else f"{name} [{s['variant']}]"


def kinds(test: dict) -> str:
    """F1 (recall) per kind, – where the test set has none of that kind."""
    cells = []
    for kind in KINDS:
        k = test["per_kind"].get(kind)
        cells.append(f"{pct(k['f1'])} ({pct(k['recall'])})" if k and k["n_gold"] else "–")
    return " / ".join(cells)


def load_runs() -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for path in sorted((OUT / "accuracy").glob("*/*.json")):
        run = json.loads(path.read_text())
        s = run["settings"]
        groups[(s["dataset"], s["train_sentences"], s["epochs"])].append(run)
    return groups


def dev_f1(run: dict) -> float | None:
    """The dev F1 of the model a run tests: after decoding was tuned on dev where it was (NAG-NER),
    else the best epoch's."""
    return run.get("tuned_dev_f1") or run["best_dev_f1"]


def best_by_dev(runs: list[dict]) -> dict:
    return max(runs, key=lambda r: (dev_f1(r) or 0.0, -r["settings"]["lr"]))


def group_tables(key: tuple, runs: list[dict]) -> list[str]:
    dataset, n_train, epochs = key
    lines = [f"### {NAMES[dataset]}: {n_train} training sentences × {epochs} epochs", ""]
    by_system: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        s = run["settings"]
        by_system[(s["system"], s["variant"])].append(run)
    lines += [
        "| system | lr (best dev of sweep) | dev F1 | test P | test R | test F1 | seqeval F1 | F1 (R) flat / nested / discont. | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    main: dict[tuple, dict] = {}
    for (system, variant), group in sorted(by_system.items(), key=lambda kv: (kv[0][1] != "full", kv[0])):
        seed42 = [r for r in group if r["settings"]["seed"] == 42] or group
        best = main[(system, variant)] = best_by_dev(seed42)
        micro = best["test"]["micro"]
        lrs = sorted({r["settings"]["lr"] for r in seed42})
        sweep = f"{best['settings']['lr']:g}" + (f" of {{{', '.join(f'{lr:g}' for lr in lrs)}}}" if len(lrs) > 1 else "")
        lines.append(
            f"| {system_name(best)} | {sweep} | {pct(dev_f1(best))} | {pct(micro['precision'])} | "
            f"{pct(micro['recall'])} | **{pct(micro['f1'])}** | {pct(best['test'].get('seqeval', {}).get('f1'))} | "
            f"{kinds(best['test'])} | {best['train_seconds']:.0f} |"
        )
    sweeps = [(k, g) for k, g in by_system.items() if len({r["settings"]["lr"] for r in g}) > 1]
    if sweeps:
        lines += ["", "Learning-rate sweep (seed 42; dev F1 chooses, test F1 shown for completeness):", "",
                  "| system | lr | dev F1 | test F1 |", "|---|---|---|---|"]
        for _, group in sorted(sweeps):
            for run in sorted((r for r in group if r["settings"]["seed"] == 42), key=lambda r: r["settings"]["lr"]):
                lines.append(f"| {system_name(run)} | {run['settings']['lr']:g} | {pct(dev_f1(run))} | "
                             f"{pct(run['test']['micro']['f1'])} |")
    full = main.get(("nag", "full"))
    if full and any(v != "full" for (_, v) in main):
        def seed_mean(variant: str) -> tuple[float, int]:
            """Mean test F1 over the seeds run at the learning rate of the variant's main row."""
            lr = main[("nag", variant)]["settings"]["lr"]
            f1s = [r["test"]["micro"]["f1"] for r in by_system[("nag", variant)] if r["settings"]["lr"] == lr]
            return statistics.mean(f1s), len(f1s)

        full_mean, _ = seed_mean("full")
        lines += ["", "Training-time ablations (each row retrains with one part of the recipe off; seed 42, and "
                      "the mean over every seed run):", "",
                  "| variant | dev F1 | test F1 | Δ vs full | mean test F1 (seeds) | Δ mean vs full | F1 (R) flat / nested / discont. |",
                  "|---|---|---|---|---|---|---|"]
        for (system, variant), run in sorted(main.items(), key=lambda kv: (kv[0][1] != "full", kv[0])):
            if system != "nag":
                continue
            delta = run["test"]["micro"]["f1"] - full["test"]["micro"]["f1"]
            mean, n = seed_mean(variant)
            lines.append(f"| {variant} | {pct(dev_f1(run))} | {pct(run['test']['micro']['f1'])} | "
                         f"{100 * delta:+.2f} | {pct(mean)} ({n}) | {100 * (mean - full_mean):+.2f} | {kinds(run['test'])} |")
    if full and full.get("decoding_ablations"):
        d = full["decoding"]
        lines += ["", f"Decoding settings tuned on dev: start threshold {d['start_threshold']}, NONE bias {d.get('none_bias', 0.0)}, beam {d['beam_size']}, "
                      f"END bias {d['end_bias']}, score threshold {d['score_threshold']}, overlap {d['overlap']}. "
                      "Decoding-only ablations on the same trained model:", "",
                  "| decoding | test F1 | Δ | F1 (R) flat / nested / discont. |", "|---|---|---|---|",
                  f"| tuned | {pct(full['test']['micro']['f1'])} | – | {kinds(full['test'])} |"]
        for name, test in full["decoding_ablations"].items():
            delta = test["micro"]["f1"] - full["test"]["micro"]["f1"]
            lines.append(f"| {name} | {pct(test['micro']['f1'])} | {100 * delta:+.2f} | {kinds(test)} |")
    seeded = {k: g for k, g in by_system.items() if len({r["settings"]["seed"] for r in g}) > 1}
    if seeded:
        lines += ["", "Seeds (same lr, mean ± sd of test F1):", "", "| system | lr | seeds | test F1 |", "|---|---|---|---|"]
        for _, group in sorted(seeded.items()):
            by_lr: dict[float, list[dict]] = defaultdict(list)
            for run in group:
                by_lr[run["settings"]["lr"]].append(run)
            for lr, same in sorted(by_lr.items()):
                if len(same) < 2:
                    continue
                f1s = [100 * r["test"]["micro"]["f1"] for r in same]
                seeds = ", ".join(str(r["settings"]["seed"]) for r in same)
                lines.append(f"| {system_name(same[0])} | {lr:g} | {seeds} | {statistics.mean(f1s):.2f} ± "
                             f"{statistics.stdev(f1s):.2f} |")
    return lines + [""]


def speed_tables() -> list[str]:
    path = OUT / "speed.json"
    if not path.exists():
        return []
    report = json.loads(path.read_text())
    return report.get("tables", [])


if __name__ == "__main__":
    for key, runs in sorted(load_runs().items()):
        print("\n".join(group_tables(key, runs)))
    print("\n".join(speed_tables()))
