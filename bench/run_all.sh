#!/usr/bin/env bash
# The NAG-NER benchmarks of bench/RESULTS.md sections 1, 3 and 4 (section 1′'s sample ablations: see there), in the order and with the settings recorded
# there (about 2.5 hours of CPU on 2 cores; run two of the accuracy lines at a time with --threads 1,
# then the speed benchmark alone). Needs ../shared/data and the venv (bash .ci/install).
# Results: bench/out/accuracy/<dataset>/*.json and bench/out/speed.json; tables: python bench/report.py.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
mkdir -p bench/out
acc() { python bench/accuracy.py --threads 1 "$@"; }
acc --dataset conll --systems nag,tokcls --lrs 5e-5,1e-4,2e-4 --epochs 3 --train-limit 3000
acc --dataset conll --systems nag,tokcls --lrs 2e-4 --seeds 1,2 --epochs 3 --train-limit 3000
acc --dataset conll --systems nag --lrs 2e-4 --epochs 3 --train-limit 3000 --variants no-span-positives,no-span-classifier,no-span-negatives,no-cross-slot,no-pointer-prior,no-span-typing,no-position-init
acc --dataset conll --systems ar --lrs 2e-4 --epochs 3 --train-limit 3000
acc --dataset cadec --systems nag --lrs 1e-4 --epochs 8 --variants full,span-gaps
acc --dataset cadec --systems nag --lrs 1e-4,2e-4 --epochs 12 --out bench/out/accuracy-r5   # section 1e
acc --dataset cadec --systems nag --lrs 1e-4 --epochs 8 --variants full,no-surplus-slots,no-position-init,no-cross-slot,no-pointer-prior --out bench/out/accuracy-abl   # section 1g
acc --dataset cadec --systems ar,nag --lrs 1e-4 --epochs 3 --train-limit 1000
acc --dataset genia --systems nag --lrs 1e-4 --epochs 6
acc --dataset germeval --systems nag --lrs 1e-4 --epochs 2
acc --dataset conll --systems tokcls --lrs 1e-4 --epochs 3 --out bench/out/accuracy-full-conll   # section 1c
python bench/speed.py --threads 2 --rounds 3
python bench/speed.py --threads 2 --rounds 3 --datasets conll --batch-size 1 --sentences 500
python bench/decoder_packing.py --threads 2 --rounds 5   # section 1d, alone
python bench/report.py > bench/out/tables.md
# Section 4 (issue 14), each alone on the machine:
python bench/startup.py --rounds 5 --threads 2
python bench/predict_memory.py
