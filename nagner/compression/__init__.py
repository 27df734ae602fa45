"""`nagner.compression`: compressing encoders and generative models, a library for any transformers
model (it stands on `nagner.common` alone, like `nagner.peft`).

Built so far: WID's compactors, mask schedule, weight squeezing and conversion into a dense smaller
BERT (`nagner.compression.wid`). LECO, SIMPLE and QuantGPT are not built yet.
"""
