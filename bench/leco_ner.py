"""LECO for NAG-NER: early exiting with the shipped default model on CoNLL-2003.

    python bench/leco_ner.py --epochs 1 --speed-sentences 300

1. Exit bridges for the default model (frozen), trained on CoNLL-2003 train (``--train-limit``
   sentences, ``--epochs``) with `nagner.exit_training.train_exit_bridges` (saved under ``--out``;
   a later run reuses them); ``--distillation W`` adds the exits' self-distillation from the last
   layer's detector with weight W.
2. Every exit's slot signature, uncertainty and decoded entities recorded on dev (eng.testa) and
   test (eng.testb) with `record_exits`; the rules are swept offline on those records: each exit
   alone (fixed layer), agreement (patience 1–4), vote (2–5 agreeing exits), uncertainty (τ grid).
   Speed-up in layers = 6 / mean exit layer.
3. Operating point of each rule family: its fastest setting whose *dev* F1 is at most 0.5 below
   the full model's dev F1 (chosen on dev, reported on test).
4. For each operating point, on test (``--phase speed`` alone, after ``--phase accuracy``, which may
   share the machine): F1 from the real `predict_early` (all test sentences;
   checked against the sweep), FLOPs over the first ``--speed-sentences`` sentences (FlopCounterMode,
   bridges, detector and decoder included) and wall-clock latency per sentence at batch 1 with 1
   and 2 threads, interleaved sentence by sentence with the default model's own prediction at
   batch 1 (`NagNerModel.predict_sentences`, LoRA merged).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from exit_costs import interleaved_latency, total_flops

from nagner.checkpoint import load_checkpoint
from nagner.compression.leco.structured_rules import (
    AgreementRule,
    UncertaintyRule,
    VoteRule,
    parse_structured_rule,
)
from nagner.data import read_sentences
from nagner.evaluation import evaluate_entities
from nagner.exit_training import train_exit_bridges
from nagner.modeling.early_exit import ExitBridges, _features, entities_at_exits, predict_early, record_exits
from nagner.modeling.inference import merge_windows

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "conll2003"
FAMILIES = {
    "agreement (PABEE-style)": [AgreementRule(p) for p in (1, 2, 3, 4)],
    "vote (COBEE-style)": [VoteRule(k) for k in (2, 3, 4, 5)],
    "uncertainty (Li et al.)": [UncertaintyRule(t) for t in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)],
}


def rule_text(rule) -> str:
    """The rule's command-line form (`parse_structured_rule` reads it back)."""
    if isinstance(rule, AgreementRule):
        return f"agreement:{rule.patience}"
    if isinstance(rule, VoteRule):
        return f"vote:{rule.threshold}"
    return f"uncertainty:{rule.threshold}"


def f1(gold, predicted) -> float:
    return 100 * evaluate_entities([s.entities for s in gold], predicted).f1


def sweep(model, sentences, features, records) -> dict[str, list[dict]]:
    """Every rule setting's F1 and layer speed-up from the records."""
    layers = model.encoder.config.num_hidden_layers
    table = {"fixed exit": []}
    for k in range(1, layers + 1):
        decoded = [(features, [r.found[k - 1] for r in records])]
        table["fixed exit"].append({"rule": f"layer {k}", "f1": f1(sentences, merge_windows(sentences, decoded, model.config.entity_types)),
                                    "speed_up": layers / k})
    for family, rules in FAMILIES.items():
        table[family] = []
        for rule in rules:
            entities, exits = entities_at_exits(model, sentences, features, records, rule)
            table[family].append({"rule": repr(rule), "f1": f1(sentences, entities), "speed_up": layers * len(exits) / sum(exits)})
    return table


def speed(model, bridges, test, report: dict, sentences: int) -> None:
    """FLOPs and interleaved batch-1 latency of the accuracy phase's operating points (added to
    ``report["operating_points"]``), and the final table."""
    rows = report["operating_points"]
    chosen = {family: parse_structured_rule(row["rule_text"]) for family, row in rows.items() if family != "default model"}
    full_test = report["full_test_f1"]
    speed_sample = test[:sentences]
    base_flops = total_flops(lambda s: model.predict_sentences([s], batch_size=1), speed_sample)
    for family, rule in chosen.items():
        flops = total_flops(lambda s, rule=rule: predict_early(model, bridges, [s], rule), speed_sample)
        rows[family]["flops_speed_up"] = base_flops / flops
    def encoder_alone(sentence) -> None:
        """The default model's encoder over the sentence's windows, nothing else (its share of the time)."""
        features, collate = _features(model, [sentence])
        for feature in features:
            batch = collate([feature])
            with torch.no_grad():
                model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    for threads in (1, 2):
        systems = {"default model": lambda s: model.predict_sentences([s], batch_size=1), "encoder alone": encoder_alone}
        for family, rule in chosen.items():
            systems[family] = lambda s, rule=rule: predict_early(model, bridges, [s], rule)
        timing = interleaved_latency(systems, speed_sample, threads)
        report[f"latency_{threads}t"] = timing
        for family in chosen:
            rows[family][f"wall_{threads}t"] = timing[family]
        rows.setdefault("default model", {})[f"wall_{threads}t"] = timing["default model"]
    print(f"\nOperating points (chosen on dev: fastest with dev F1 ≥ {report['full_dev_f1'] - 0.5:.2f}); test F1 of the default model {full_test:.2f}")
    print(f"speed on the first {len(speed_sample)} test sentences, batch 1; wall-clock: total-time ratio (median per-sentence ratio, quartiles)\n")
    alone = [report[f"latency_{t}t"]["encoder alone"]["total_s"] / report[f"latency_{t}t"]["default model"]["total_s"] for t in (1, 2)]
    print(f"(the default model's encoder alone, tokenization included: {100 * alone[0]:.0f} % / {100 * alone[1]:.0f} % of its time "
          f"at 1 / 2 threads)\n")
    print("| rule | test F1 | ΔF1 | speed-up: layers | FLOPs | wall-clock 1 thread | 2 threads |")
    print("|---|---|---|---|---|---|---|")
    base = rows["default model"]
    print(f"| default model (no exit) | {full_test:.2f} | – | 1.00× | 1.00× | {base['wall_1t']['median_ms']:.1f} ms/sentence | "
          f"{base['wall_2t']['median_ms']:.1f} ms/sentence |")
    for family in chosen:
        r = rows[family]
        walls = [f"{r[k]['speed_up_total']:.2f}× ({r[k]['speed_up_median']:.2f}×, {r[k]['speed_up_q1']:.2f}–{r[k]['speed_up_q3']:.2f})"
                 for k in ("wall_1t", "wall_2t")]
        print(f"| {family}: {r['rule']} | {r['test_f1']:.2f} | {r['test_f1'] - full_test:+.2f} | {r['layer_speed_up']:.2f}× | "
              f"{r['flops_speed_up']:.2f}× | {walls[0]} | {walls[1]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-limit", type=int, default=None, help="training sentences (default: all)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--distillation", type=float, default=0.0, help="self-distillation weight (train_exit_bridges)")
    parser.add_argument("--speed-sentences", type=int, default=300)
    parser.add_argument("--test-limit", type=int, default=None, help="dev/test sentences (smoke runs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "leco_ner"))
    parser.add_argument("--phase", choices=("all", "accuracy", "speed"), default="all",
                        help="accuracy: bridges, sweep, operating points' test F1; speed: their FLOPs and latency "
                             "(reads the accuracy phase's results.json; run it alone on the machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    results = out / "results.json"
    if args.phase == "speed" and not results.exists():
        parser.error(f"--phase speed reads {results}: run --phase accuracy with the same --out first")
    model = load_checkpoint(device="cpu")
    bridges_dir = out / "exits"
    if (bridges_dir / "exits.json").exists():
        bridges = ExitBridges.from_pretrained(bridges_dir)
    else:
        train = read_sentences(str(DATA / "eng.train"))[: args.train_limit]
        began = time.perf_counter()
        bridges, losses = train_exit_bridges(model, train, epochs=args.epochs, learning_rate=args.lr,
                                             distillation=args.distillation)
        bridges.save_pretrained(bridges_dir)
        print(json.dumps({"train_sentences": len(train), "epochs": args.epochs, "distillation": args.distillation, "losses": [round(x, 4) for x in losses],
                          "seconds": round(time.perf_counter() - began)}), flush=True)
    dev = read_sentences(str(DATA / "eng.testa"))[: args.test_limit]
    test = read_sentences(str(DATA / "eng.testb"))[: args.test_limit]
    if args.phase == "speed":
        report = json.loads(results.read_text(encoding="utf-8"))
        speed(model, bridges, test, report, args.speed_sentences)
        results.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
        return
    report: dict = {}
    tables = {}
    for name, sentences in (("dev", dev), ("test", test)):
        features, records = record_exits(model, bridges, sentences)
        tables[name] = sweep(model, sentences, features, records)
    report["sweep"] = tables
    full_dev, full_test = tables["dev"]["fixed exit"][-1]["f1"], tables["test"]["fixed exit"][-1]["f1"]
    print(f"default model: dev F1 {full_dev:.2f}, test F1 {full_test:.2f}\n")
    print("| exits | setting | dev F1 | dev speed-up (layers) | test F1 | test speed-up (layers) |")
    print("|---|---|---|---|---|---|")
    for family in tables["dev"]:
        for d, t in zip(tables["dev"][family], tables["test"][family]):
            print(f"| {family} | {d['rule']} | {d['f1']:.2f} | {d['speed_up']:.2f}× | {t['f1']:.2f} | {t['speed_up']:.2f}× |")
    chosen = {}
    for family, rules in FAMILIES.items():
        allowed = [(row["speed_up"], i) for i, row in enumerate(tables["dev"][family]) if row["f1"] >= full_dev - 0.5]
        if allowed:
            chosen[family] = rules[max(allowed)[1]]
    rows = {}
    for family, rule in chosen.items():
        entities, exits = predict_early(model, bridges, test, rule)
        rows[family] = {"rule": repr(rule), "rule_text": rule_text(rule), "test_f1": f1(test, entities),
                        "layer_speed_up": 6 * len(exits) / sum(exits)}
    report["operating_points"] = rows
    report["full_dev_f1"], report["full_test_f1"] = full_dev, full_test
    print(f"\nOperating points (chosen on dev: fastest with dev F1 ≥ {full_dev - 0.5:.2f}); test F1 of the default model {full_test:.2f}\n")
    print("| rule | test F1 | ΔF1 | speed-up: layers |")
    print("|---|---|---|---|")
    for family, r in rows.items():
        print(f"| {family}: {r['rule']} | {r['test_f1']:.2f} | {r['test_f1'] - full_test:+.2f} | {r['layer_speed_up']:.2f}× |")
    out.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    if args.phase == "all":
        speed(model, bridges, test, report, args.speed_sentences)
        results.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
