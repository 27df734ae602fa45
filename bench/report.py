"""Markdown tables of bench/out/accuracy-*.json and bench/out/speed.json (pasted into RESULTS.md)."""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
ORDER = ("conll", "cadec", "germeval", "genia")
NAMES = {"conll": "CoNLL-2003 (flat)", "cadec": "CADEC (discontinuous)", "germeval": "GermEval 2014 (nested, 2 levels)",
         "genia": "GENIA (nested; trained on dev)"}


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def accuracy_table() -> list[str]:
    lines = [
        "| dataset | system | train sents × epochs | test P | test R | test F1 | seqeval F1 | F1 flat / nested / discont. | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ORDER:
        path = OUT / f"accuracy-{name}.json"
        if not path.exists():
            continue
        report = json.loads(path.read_text())
        for row in report["rows"]:
            micro, kinds = row["test"]["micro"], row["test"]["per_kind"]
            by_kind = " / ".join(pct(kinds[k]["f1"]) if kinds[k]["n_gold"] else "–" for k in ("flat", "nested", "discontinuous"))
            lines.append(
                f"| {NAMES[name]} | {row['system']} | {report['train_sentences']} × {report['epochs']} | "
                f"{pct(micro['precision'])} | {pct(micro['recall'])} | **{pct(micro['f1'])}** | "
                f"{pct(row['test'].get('seqeval', {}).get('f1'))} | {by_kind} | {row['train_seconds']:.0f} |"
            )
    return lines


def speed_table() -> list[str]:
    path = OUT / "speed.json"
    if not path.exists():
        return []
    report = json.loads(path.read_text())
    rows = report["rows"]
    base = rows["tokcls"]["sentences_per_s"]
    lines = [
        "| system | end to end sent/s | vs token classification | decoder phase sent/s | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for row in rows.values():
        decoder = f"{row['decoder_sentences_per_s']:.0f}" if "decoder_sentences_per_s" in row else "–"
        lines.append(
            f"| {row['system']} | {row['sentences_per_s']:.0f} | {row['sentences_per_s'] / base:.2f}× | {decoder} | "
            f"{row['peak_rss_mb']:.0f} |"
        )
    lines.append("")
    lines.append(f"Decoder phase, NAG vs AR mode: **{report['nag_vs_ar_decoder']:.2f}×** faster.")
    return lines


if __name__ == "__main__":
    print("\n".join(accuracy_table()))
    print()
    print("\n".join(speed_table()))
