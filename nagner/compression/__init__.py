"""`nagner.compression`: compressing encoders and generative models, a library for any transformers
model (it stands on `nagner.common` alone, like `nagner.peft`).

- `wid`: weight-inherited distillation of BERT-style encoders (compactors, mask schedule, weight
  squeezing, conversion into a dense smaller BERT);
- `leco`: learned exits and comparison-based early exiting;
- `simple`: structured pruning of generative models (learned masks over heads, FFN neurons and one
  shared hidden dimension; extraction into a standard, smaller model; distillation);
- `quantgpt`: quantization-aware training of generative models (module-wise dynamic scaling, token
  contrastive distillation; PACT and min–max baselines; real int8 on CPU);
- `language_modeling`: the batches, losses and training loop the last two share.
"""
