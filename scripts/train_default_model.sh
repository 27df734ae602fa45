#!/usr/bin/env bash
# Reproduce the shipped default model (nagner/default_model): LoRA (r=16, all linear layers) on the
# frozen all-MiniLM-L6-v2 encoder plus the NAG-NER heads, trained on CoNLL-2003 English (train),
# model selection on testa (dev), scored on testb (test).
#   bash scripts/train_default_model.sh [CONLL_DIR] [RUN_DIR]
# CONLL_DIR holds eng.train / eng.testa / eng.testb (default: ../shared/data/conll2003).
set -euo pipefail
cd "$(dirname "$0")/.."
CONLL=${1:-../shared/data/conll2003}
RUN=${2:-runs/default_model}
python -m nagner train \
  --encoder sentence-transformers/all-MiniLM-L6-v2 \
  --train "$CONLL/eng.train" --dev "$CONLL/eng.testa" --output-dir "$RUN" \
  --adapter lora --adapter-options r=16 lora_alpha=32 \
  --epochs 3 --batch-size 16 --lr 1e-3 --head-lr 1e-3 --seed 42 --no-checkpoints
python -m nagner evaluate --model "$RUN/best" --data "$CONLL/eng.testb" | tee "$RUN/test_scores.txt"
