"""Peak memory of `nagner predict` on big inputs: it should not grow with the number of lines.

Builds a tiny random model (tests' 2-layer hidden-32 BERT, untrained heads) in a temporary
folder, writes inputs of 10k and 100k generated lines, and runs

    nagner predict --model M --input in.txt --output out.jsonl

as a subprocess for each, reading the child's own peak RSS (``ru_maxrss`` from ``wait4``).

    python bench/predict_memory.py [--sizes 10000 100000] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
from nagner.modeling import NagNerModel  # noqa: E402
from nagner.testing import build_tiny_encoder  # noqa: E402

NAMES = ["Ann Lee", "John Reed", "Zoë Ångström", "Yuki Sato", "Omar Haddad"]
PLACES = ["Paris", "New York", "Zürich", "Lima", "São Paulo", "東京"]
ORGS = ["the University of Osaka", "Blue River Foods", "the Bank of Madrid"]
TEMPLATES = [
    "{name} works for {org} in {place}.",
    "{name} visited {place} on Monday.",
    "{org} opened an office in {place}.",
    "",
    "I had dry mouth and skin rash after two weeks on Zentrax.",
]


def write_input(path: Path, n_lines: int, seed: int = 0) -> None:
    """``n_lines`` generated lines (some empty), written without holding them all in memory."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(n_lines):
            template = rng.choice(TEMPLATES)
            out.write(template.format(name=rng.choice(NAMES), place=rng.choice(PLACES), org=rng.choice(ORGS)) + "\n")


def run_predict(model: Path, source: Path, output: Path, threads: int) -> tuple[int, float, float]:
    """Exit status, wall seconds and the child's peak RSS in MiB."""
    nagner = Path(sys.executable).with_name("nagner")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    child = subprocess.Popen([str(nagner), "predict", "--model", str(model), "--input", str(source),
                              "--output", str(output)], env=env)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    return child.returncode, seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="input lines per run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the child (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nagner-memory-") as tmp:
        folder = Path(tmp)
        torch.manual_seed(0)
        model = folder / "model"
        NagNerModel.from_encoder(build_tiny_encoder(folder / "encoder"), ["PER", "LOC", "ORG"]).save_pretrained(model)
        rows = []
        for size in args.sizes:
            source, output = folder / f"in-{size}.txt", folder / f"out-{size}.jsonl"
            write_input(source, size)
            code, seconds, peak = run_predict(model, source, output, args.threads)
            if code != 0:
                sys.exit(f"nagner predict failed (exit {code}) on {size} lines")
            with open(output, "rb") as lines:
                records = sum(1 for _ in lines)
            rows.append((size, records, output.stat().st_size / 2**20, seconds, peak))
            source.unlink()
            output.unlink()
    print(f"{'lines':>8}  {'records':>8}  {'output MiB':>10}  {'seconds':>8}  {'peak RSS MiB':>12}")
    for size, records, mib, seconds, peak in rows:
        print(f"{size:>8}  {records:>8}  {mib:>10.1f}  {seconds:>8.1f}  {peak:>12.1f}")
    print(f"(tiny random model, torch threads in the child: {args.threads})")


if __name__ == "__main__":
    main()
