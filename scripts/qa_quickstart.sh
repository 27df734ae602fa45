#!/usr/bin/env bash
# knowledge_qa on a fresh machine: install, index our sample corpus, train a small GEEK (core model and
# extractor: an encoder-decoder warm-started from all-MiniLM-L6-v2, LoRA) on our 14 sample questions,
# ask it a question with its trace, and run the evaluation script. A check that the whole pipeline
# works (about 10 minutes on 2 CPU cores), not an accuracy claim: the StrategyQA numbers come from
# bench/knowledge_qa_strategyqa.py. Outputs go to runs/qa-quickstart/ (EPOCHS=… to change the budget).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/knowledge-qa ] || bash .ci/install
. .venv/bin/activate
OUT=runs/qa-quickstart
knowledge-qa index data/qa_corpus.jsonl --output "$OUT/index"
knowledge-qa train --warm-start --questions data/qa_questions.json --corpus data/qa_corpus.jsonl \
  --output "$OUT/model" --epochs "${EPOCHS:-6}" --batch-size 8 --learning-rate 1e-3
MODELS=(--core "$OUT/model/core" --extractor "$OUT/model/extractor" --index "$OUT/index")
knowledge-qa ask "Did Aristotle use a laptop?" "${MODELS[@]}"
rm -f "$OUT/traces.jsonl"
python -m knowledge_qa.evaluate --questions data/qa_questions.json --traces "$OUT/traces.jsonl" "${MODELS[@]}"
