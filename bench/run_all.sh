#!/usr/bin/env bash
# Every benchmark of bench/RESULTS.md, in the order and with the settings recorded there.
# Needs ../shared/data (CoNLL-2003, CADEC, GermEval 2014, GENIA) and the venv (bash .ci/install).
# About an hour on 2 CPU cores. Logs and JSON results go to bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
mkdir -p bench/out
run() { local name=$1; shift; python "$@" 2>&1 | tee "bench/out/$name.log" | grep -E "^(==|   test|[A-Za-z].*[0-9]\.[0-9]{2}$)|decoder phase" || true; }
run conll    bench/accuracy.py --dataset conll --epochs 2 --dev-limit 1000
run cadec    bench/accuracy.py --dataset cadec --epochs 4 --dev-limit 1000
run genia    bench/accuracy.py --dataset genia --epochs 6
run germeval bench/accuracy.py --dataset germeval --epochs 2 --train-limit 6000 --dev-limit 1000
run speed    bench/speed.py --threads 2 --batch-size 64
python bench/report.py > bench/out/tables.md
