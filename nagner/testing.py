"""Tiny random models for tests, benchmarks and notebooks: no download, built in a second.

    encoder = build_tiny_encoder(tmp_path / "encoder")        # a BERT folder with its tokenizer
    model = NagNerModel.from_encoder(str(encoder), ["PER", "LOC"])
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast


def build_tiny_encoder(path: str | Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Save a random BERT (``layers`` layers of width ``hidden``, 2 heads) and a WordPiece tokenizer
    (lower-case letters, digits, punctuation, a few accented letters and common words) under
    ``path``; returns the folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits + string.punctuation + "äöüßéèàçñ…"
    words = "the of in and to a is was at on for with by from university paris berlin london".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars), *words]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(path / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(str(path))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(str(path))
    return path
